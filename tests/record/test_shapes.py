"""The shape check: every element the adapter reads has the JSON type FHIR R4 gives it, or the resource is not read."""

from __future__ import annotations

import copy
import random
from typing import Any

import orjson
import pytest

from fhir_adapter.paths import data_dir, sample_dir
from fhir_adapter.record import shapes
from fhir_adapter.record.resource_types import rules
from fhir_adapter.sources.check import MALFORMED, problem

OBS = {"resourceType": "Observation", "id": "o1", "status": "final",
       "code": {"coding": [{"system": "http://loinc.org", "code": "2157-6"}], "text": "CK"},
       "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2026-01-02",
       "valueQuantity": {"value": 100, "unit": "U/L", "system": "http://unitsofmeasure.org", "code": "U/L"},
       "referenceRange": [{"high": {"value": 170.5, "unit": "U/L"}}],
       "meta": {"lastUpdated": "2026-01-02T00:00:00Z", "tag": [{"system": "x", "code": "y"}]}}


def with_(path: str, value: Any, base: dict | None = None) -> dict:
    """A copy of ``base`` (default ``OBS``) with the element at ``path`` ("code.coding.0.code") set to ``value``."""
    out = copy.deepcopy(base or OBS)
    *parents, last = path.split(".")
    node: Any = out
    for p in parents:
        node = node[int(p)] if isinstance(node, list) else node.setdefault(p, {})
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return out


def test_a_well_formed_resource_passes() -> None:
    assert problem(OBS) is None


@pytest.mark.parametrize(("path", "value", "said"), [
    ("id", ["o1"], "Observation.id is a list, not a string"),
    ("meta", True, "Observation.meta is a boolean, not an object"),
    ("meta.tag", {"system": "x"}, "Observation.meta.tag is an object, not a list"),
    ("code", "CK", "Observation.code is a string, not an object"),
    ("code.coding", {"system": "http://loinc.org", "code": "2157-6"},
     "Observation.code.coding is an object, not a list"),
    ("code.coding.0", "2157-6", "Observation.code.coding[0] is a string, not an object"),
    ("code.coding.0.code", 2157, "Observation.code.coding[0].code is a number, not a string"),
    ("subject", "Patient/p1", "Observation.subject is a string, not an object"),
    ("subject.reference", {"id": "p1"}, "Observation.subject.reference is an object, not a string"),
    ("valueQuantity.value", "100", "Observation.valueQuantity.value is a string, not a number"),
    ("valueQuantity.value", True, "Observation.valueQuantity.value is a boolean, not a number"),
    ("referenceRange.0.high.value", None, "Observation.referenceRange[0].high.value is null, not a number"),
    ("effectiveDateTime", 20260102, "Observation.effectiveDateTime is a number, not a string"),
    ("category", {"text": "lab"}, "Observation.category is an object, not a list"),
    ("contained", [{"resourceType": "Medication", "code": ["x"]}],
     "Observation.contained[0] (Medication).code is a list, not an object"),
    ("contained", [{"id": "m"}], "Observation.contained[0] is an object without resourceType, not a resource"),
    ("contained", {"resourceType": "Medication"}, "Observation.contained is an object, not a list of resources"),
])
def test_the_first_element_of_the_wrong_type_is_named(path: str, value: Any, said: str) -> None:
    kind, reason = problem(with_(path, value))
    assert reason.startswith(said), reason
    assert kind == ("not a FHIR resource" if path == "id" else MALFORMED)


def test_elements_the_adapter_does_not_read_are_not_checked() -> None:
    assert problem(with_("extension", "anything")) is None
    assert problem(with_("valueQuantity.extension", 5)) is None
    assert problem({"resourceType": "Practitioner", "id": "x", "name": "Dr Who"}) is None  # not a type it reads
    assert problem({"resourceType": "Practitioner", "id": "x", "meta": []}) is not None  # but every resource's meta


def test_integers_and_floats_are_both_numbers() -> None:
    assert problem(with_("valueQuantity.value", 1.5)) is None
    assert problem(with_("valueQuantity.value", 18446744073709551616)) is None  # Python reads any integer


def test_every_datatype_and_type_in_the_table_is_defined() -> None:
    raw = orjson.loads((data_dir("mappings") / "fhir-elements.json").read_bytes())
    defined = set(raw["datatypes"]) | {"string", "boolean", "decimal", "integer"}
    used = {spec.removesuffix("[]") for table in [*raw["datatypes"].values(), *raw["resources"].values()]
            for spec in table.values()}
    assert used <= defined, used - defined
    assert set(raw["resources"]) - {"*"} >= set(rules().clinical) | set(rules().shared) | {"Patient"}
    for t in raw["resources"]:
        assert t == "*" or t in rules().r4_types, t


def test_the_sample_is_read_whole() -> None:
    """No resource of the sample (or of a Bundle entry of the fixtures) is refused: the table matches real data."""
    for f in sorted(sample_dir().glob("*.ndjson")):
        for line in f.read_bytes().splitlines():
            assert problem(orjson.loads(line)) is None, (f.name, line[:120])


ODD = [None, True, 0, 1.5, "x", [], ["x"], [1], {}, {"a": 1}, [{"code": 1}], {"coding": "x"}]


def mutations(resource: Any, rng: random.Random) -> Any:
    """``resource`` with one element somewhere in it replaced by a value of some JSON type."""
    out = copy.deepcopy(resource)
    node: Any = out
    parent: Any = None
    key: Any = None
    for _ in range(rng.randint(1, 5)):
        keys = list(range(len(node))) if isinstance(node, list) else [k for k in node if k != "resourceType"]
        if not keys:
            break
        parent, key = node, rng.choice(keys)
        if not isinstance(node[key], (dict, list)) or rng.random() < 0.3:
            break
        node = node[key]
    if parent is not None:
        parent[key] = rng.choice(ODD)
    return out


@pytest.mark.skipif(shapes._walk is None, reason="the compiled shape check (_shapes.c) is not built here")
def test_the_compiled_walk_and_the_python_walk_agree() -> None:
    """The C walk only says whether; ``_where`` is the definition: they must agree on every resource."""
    rng = random.Random(15)
    table = shapes.nodes()
    samples = [orjson.loads(line) for f in sorted(sample_dir().glob("*.ndjson")) for line in
               f.read_bytes().splitlines()[:60]]
    refused = 0
    for _ in range(4000):
        r = mutations(rng.choice(samples), rng)
        node = table.get(r["resourceType"]) or table["*"]
        by_c = shapes._walk(r, node, table)
        by_python = shapes._where(r, node)
        assert by_c in (0, 1) and (by_c == 0) == (by_python is None), (r, by_python)
        refused += by_c
    assert 500 < refused < 3500  # the mutations did hit elements that are read, and others that are not
