"""Property: random mutations of the sample's resources (wrong types at every level, missing and odd fields,
unicode, extreme numbers) never let an exception escape the record assembler, a criterion or a score, and never
change the result of a patient they do not touch.

Each example copies the built-in sample's NDJSON files with one to three resources mutated, reads them through the
population path (``NdjsonSource.map_records``, one process so that every cache is shared as in a worker), and runs
both screens and the TIS response on every record. The examples run under the hypothesis profile in
``tests/conftest.py`` (``ci``: derandomised, a capped number of examples, no deadline).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fhir_adapter.paths import sample_dir
from fhir_adapter.record.assemble import patient_of
from fhir_adapter.record.patient_record import PatientRecord
from fhir_adapter.response.respond import Responder
from fhir_adapter.response.settings import load_settings
from fhir_adapter.response.tis import load_rules
from fhir_adapter.sources.ndjson import NdjsonSource
from fhir_adapter.studies.definition import load_study
from fhir_adapter.studies.screen import screen
from fhir_adapter.terminology.catalog import Catalog

AS_OF = date(2026, 6, 30)
SITE = sample_dir().parent / "site-mappings.json"

Resources = dict[str, list[dict[str, Any]]]  # file name -> resources, in file order


def _load() -> Resources:
    return {p.name: [orjson.loads(line) for line in p.read_bytes().splitlines() if line.strip()]
            for p in sorted(sample_dir().glob("*.ndjson"))}


def _evaluator() -> Callable[[PatientRecord], tuple[str, bytes]]:
    catalog = Catalog.load(SITE)
    promis, tofa = load_study("NCT07377058"), load_study("NCT04966884")
    settings = load_settings()
    responder = Responder(settings.study("NCT04966884"), settings, load_rules(), catalog)

    def one(record: PatientRecord) -> tuple[str, bytes]:
        results = [screen(record, promis, catalog, AS_OF), screen(record, tofa, catalog, AS_OF)]
        if responder.on_study_drug(record):
            results.append(responder(record))
        return record.patient_id, orjson.dumps(results)

    return one


def _run(folder: Path, files: Resources, evaluate: Callable[[PatientRecord], tuple[str, bytes]]) -> dict[str, bytes]:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for name, resources in files.items():
        (folder / name).write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in resources))
    with NdjsonSource(folder, workers=1) as source:
        return dict(source.map_records(evaluate, workers=1))


@cache
def sample() -> Resources:
    return _load()


@cache
def evaluate() -> Callable[[PatientRecord], tuple[str, bytes]]:
    return _evaluator()


@cache
def baseline() -> dict[str, bytes]:
    with tempfile.TemporaryDirectory(prefix="fhir-adapter-baseline-") as tmp:
        out = _run(Path(tmp) / "sample", sample(), evaluate())
    assert len(out) == len(sample()["Patient.ndjson"])
    return out


# -- mutations ---------------------------------------------------------------------------------------------------

ODD_SCALARS = st.one_of(
    st.none(), st.booleans(), st.just(""), st.just(" "), st.just("2026-02-30"), st.just("2026-13-01T25:61:00Z"),
    st.just("0000-00-00"), st.just(-1), st.just(0), st.just(-0.0), st.just(1e308), st.just(-1e308),
    st.just(2**63 - 1), st.just(-(2**63)), st.just(5e-324), st.just("Patient/"), st.just("#"), st.just("urn:uuid:"),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),  # unicode of every plane, control characters, lone combining marks
    st.text(alphabet="阳性阴性泼尼松他克莫司皮肌炎>\uff1c≥≤μµ\u00d7⁹", max_size=8),  # full-width <, times
)
ODD_VALUES = st.one_of(
    ODD_SCALARS,
    st.lists(ODD_SCALARS, max_size=3),
    st.dictionaries(st.sampled_from(["coding", "value", "reference", "system", "code", "text", "id", "start", "end",
                                     "unit", "x"]), ODD_SCALARS, max_size=3),
)


@st.composite
def mutation(draw: st.DrawFn, files: Resources) -> tuple[str, int, list[Any], str, Any]:
    """(file, index, path, operation, value): where to change one resource and how."""
    name = draw(st.sampled_from(sorted(files)))
    index = draw(st.integers(min_value=0, max_value=len(files[name]) - 1))
    node: Any = files[name][index]
    path: list[Any] = []
    while isinstance(node, dict | list) and node and draw(st.integers(0, 3)) > 0:  # go deeper, mostly
        key = draw(st.sampled_from(sorted(node, key=str) if isinstance(node, dict) else list(range(len(node)))))
        path.append(key)
        node = node[key]
    operation = draw(st.sampled_from(["replace", "delete", "wrap", "add"] if path else ["add", "replace-keys"]))
    return name, index, path, operation, draw(ODD_VALUES)


def _apply(resource: dict[str, Any], path: list[Any], operation: str, value: Any) -> dict[str, Any]:
    resource = orjson.loads(orjson.dumps(resource))  # a deep copy: the sample stays as it was
    if operation == "replace-keys":  # every top-level value but resourceType made odd at once
        return {k: (v if k == "resourceType" else value) for k, v in resource.items()}
    parent: Any = resource
    try:
        for key in path[:-1]:
            parent = parent[key]
        if path:
            parent[path[-1]]  # an earlier change to the same resource may have removed the path
    except (KeyError, IndexError, TypeError):
        return resource
    last = path[-1] if path else None
    if operation == "add":
        target = parent[last] if path else resource
        if isinstance(target, dict):
            target["extra" if "extra" not in target else "extra2"] = value
        elif isinstance(target, list):
            target.append(value)
        else:
            parent[last] = [target, value]
    elif operation == "delete":
        del parent[last]
    elif operation == "wrap":
        parent[last] = [parent[last]]
    else:
        parent[last] = value
    return resource


def _touched(files: Resources, name: str, index: int, mutated: dict[str, Any]) -> set[str]:
    """Every patient a mutated resource may belong to, before and after the change (a shared Medication: every
    patient who points at it)."""
    before = files[name][index]
    out = set()
    for r in (before, mutated):
        try:
            pid = patient_of(r)
        except Exception:  # the mutated copy may not even have a readable reference: the original says whose it is
            pid = None
        if isinstance(pid, str):
            out.add(pid)
    if before.get("resourceType") == "Medication":
        needle = f"Medication/{before['id']}"
        for resources in files.values():
            out.update(patient_of(r) or "" for r in resources if needle in orjson.dumps(r).decode())
    return out


# -- the property ---------------------------------------------------------------------------------------------------


@given(data=st.data())
def test_mutations_stay_with_the_patient_they_touch(data: st.DataObject, tmp_path_factory: pytest.TempPathFactory
                                                     ) -> None:
    original, expected_results = sample(), baseline()
    changes = data.draw(st.lists(mutation(original), min_size=1, max_size=3), label="mutations")
    files = {name: list(resources) for name, resources in original.items()}
    touched: set[str] = set()
    for name, index, path, operation, value in changes:
        mutated = _apply(files[name][index], path, operation, value)
        touched |= _touched(original, name, index, mutated)
        files[name][index] = mutated
    results = _run(tmp_path_factory.mktemp("mutated"), files, evaluate())  # no exception may escape
    for pid, expected in expected_results.items():
        if pid not in touched:
            assert results.get(pid) == expected, f"{pid} changed though no mutation touched it: {changes}"
    for pid, got in results.items():
        for result in orjson.loads(got):
            for cid, criterion in (result.get("criteria") or {}).items():
                assert "could not be evaluated" not in criterion["reason"], (pid, cid, criterion["reason"], changes)
