"""Bad input never stops a run and never silently half-reads a patient (file sources).

The sample population with bad lines of every kind appended: every patient the bad lines do not belong to gets
exactly the result it gets without them; a patient a bad line belongs to is still screened, and its result names
the line it could not read (and draws no "no such record" conclusion about its type).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import orjson
import pytest

from fhir_adapter.paths import sample_dir
from tests.test_cli import run_cli

SITE = str(sample_dir().parent / "site-mappings.json")
SCREEN = ("screen", "--study", "NCT07377058", "--as-of", "2026-06-30", "--site", SITE)
N_SAMPLE = len((sample_dir() / "Patient.ndjson").read_bytes().splitlines())  # every sample patient
LIMIT = 1 << 20  # FHIR_ADAPTER_MAX_LINE_BYTES for these runs


def obs_line(pid: str, oid: str, **extra: object) -> bytes:
    body = {"resourceType": "Observation", "id": oid, "status": "final", "code": {"text": "x"},
            "subject": {"reference": f"Patient/{pid}"}, **extra}
    return orjson.dumps(body)


BIG = obs_line("incl-i1-age65", "big").replace(b'"status"', b'"valueInteger":18446744073709551616,"status"')


def big_is_read() -> bool:
    try:
        orjson.loads(BIG)
    except orjson.JSONDecodeError:
        return False
    return True


# (file, line, the patient it belongs to or None: unread lines, but for BIG when orjson reads it)
BAD: list[tuple[str, bytes, str | None]] = [
    ("Observation.ndjson", obs_line("excl-e15-prior-tcz", "x").replace(b'"id":"x"', b'"id":["x"]'),
     "excl-e15-prior-tcz"),
    ("Observation.ndjson", obs_line("excl-e4-iv-antibiotic", "x").replace(b'"id":"x"', b'"id":{"v":"x"}'),
     "excl-e4-iv-antibiotic"),
    ("Observation.ndjson", obs_line("incl-i2-no-mda5-test", "x", meta=True), "incl-i2-no-mda5-test"),
    ("Observation.ndjson", obs_line("excl-e3e-plt", "x").replace(b'"resourceType":"Observation"', b'"resourceType":5'),
     "excl-e3e-plt"),
    ("Observation.ndjson", obs_line("excl-e12-mp-pulse", "x", code={"coding": {"system": "http://loinc.org",
                                                                                "code": "777-3"}}),
     "excl-e12-mp-pulse"),
    ("Observation.ndjson", obs_line("excl-e6-hcv", "x", effectiveDateTime="2026-01-01")[:-10], "excl-e6-hcv"),  # cut
    ("Observation.ndjson", obs_line("excl-e16-pregnant", "x", valueQuantity={"value": 1})
     .replace(b'"value":1', b'"value":Infinity'), "excl-e16-pregnant"),
    ("Observation.ndjson", obs_line("excl-e16-pregnant", "y", valueQuantity={"value": 1})
     .replace(b'"value":1', b'"value":1e400'), "excl-e16-pregnant"),
    ("Observation.ndjson", obs_line("incl-i1-age65", "long", valueString="x" * (3 * LIMIT)), "incl-i1-age65"),
    ("Observation.ndjson", obs_line("mda5-cadm-no-ild", "x").replace(b'"Observation"', b'"Observatoin"'),
     "mda5-cadm-no-ild"),
    ("Observation.ndjson", obs_line("bnd-i5-cyclosporine", "x", valueQuantity={"value": 1, "unit": ["mg"]}),
     "bnd-i5-cyclosporine"),
    ("MedicationStatement.ndjson", orjson.dumps({
        "resourceType": "MedicationStatement", "id": "x", "status": "active",
        "medicationCodeableConcept": {"text": "x"}, "subject": {"reference": "Patient/excl-e14-3-mmf"},
        "dosage": {"text": "one a day"}}), "excl-e14-3-mmf"),
    ("Condition.ndjson", orjson.dumps({"resourceType": "Condition", "id": "x", "code": "M33.1",
                                       "subject": {"reference": "Patient/excl-e15-prior-tcz"}}), "excl-e15-prior-tcz"),
    # no patient can be read from these: counted and named, nobody's record
    ("Observation.ndjson", b"not JSON at all", None),
    ("Observation.ndjson", b'["a", "list"]', None),
    ("Observation.ndjson", b'{"resourceType":"Observation","id":"x","meta":true,"status":"final","code":{"text":"x"},'
                           b'"subject":{"reference":"Patient/nobody"}}', None),
    ("Observation.ndjson", obs_line("incl-i5-cni-dose-change", "x", subject="Patient/incl-i5-cni-dose-change"), None),
    ("Observation.ndjson", b'{"resourceType":"Observation","note":[{"text":"' + b"y" * (2 * LIMIT) + b'"}]}', None),
    # an integer past 64 bits: orjson 3.10+ reads the nearest float (then it is data), older ones refuse the line
    ("Observation.ndjson", BIG, None if big_is_read() else "incl-i1-age65"),
]
TARGETS = {pid for _, _, pid in BAD if pid}


def copy_sample(to: Path) -> Path:
    to.mkdir()
    for f in sample_dir().glob("*.ndjson"):
        shutil.copy(f, to / f.name)
    return to


def with_bad_lines(to: Path) -> tuple[Path, dict[str, list[str]]]:
    """The sample with ``BAD`` appended; per target patient, where its bad lines are ("Observation.ndjson line N")."""
    folder = copy_sample(to)
    where: dict[str, list[str]] = {}
    for name, line, pid in BAD:
        path = folder / name
        n = path.read_bytes().count(b"\n") + 1
        with open(path, "ab") as f:
            f.write(line + b"\n")
        if pid:
            where.setdefault(pid, []).append(f"{name} line {n}")
    return folder, where


def env() -> dict[str, str]:
    return {**os.environ, "FHIR_ADAPTER_MAX_LINE_BYTES": str(LIMIT)}


def by_patient(stdout: str) -> dict[str, dict]:
    return {r["patient"].removeprefix("Patient/"): r for r in map(orjson.loads, stdout.splitlines())}


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, list[str]]]:
    base = tmp_path_factory.mktemp("bad-input")
    bad, where = with_bad_lines(base / "bad")
    return copy_sample(base / "clean"), bad, where


def test_bad_lines_change_no_other_patient_and_are_named_on_their_own(folders) -> None:
    clean, bad, where = folders
    before = run_cli(*SCREEN, "--source", str(clean), env=env())
    after = run_cli(*SCREEN, "--source", str(bad), env=env())
    assert before.returncode == 0, before.stderr
    assert after.returncode == 0, after.stderr  # every patient got a result
    b, a = by_patient(before.stdout), by_patient(after.stdout)
    assert sorted(a) == sorted(b) and len(a) == N_SAMPLE
    assert {p for p in a if a[p] != b[p]} <= TARGETS  # nobody else moved
    for pid in TARGETS:
        assert "unreadable" not in b[pid]
        named = a[pid].get("unreadable", [])
        assert len(named) == len(where[pid]), (pid, named)
        for w in where[pid]:
            assert any(u.startswith(f"{w}: ") for u in named), (pid, w, named)
    # the reasons say what was wrong
    text = "\n".join(u for pid in TARGETS for u in a[pid]["unreadable"])
    for reason in ("Observation.id is a list, not a string", "Observation.meta is a boolean, not an object",
                   "Observation.code.coding is an object, not a list", "not JSON",
                   f"over the limit of {LIMIT:,} (FHIR_ADAPTER_MAX_LINE_BYTES)", "unknown resourceType 'Observatoin'",
                   "MedicationStatement.dosage is an object, not a list", "Condition.code is a string, not an object",
                   "Observation.valueQuantity.unit is a list, not a string"):
        assert reason in text, reason
    # and the summary counts every bad line, each named with its file and line
    assert "Traceback" not in after.stderr
    assert f"skipped {len(BAD) - big_is_read():,} with problems" in after.stderr


def test_an_unreadable_record_forbids_an_absence_conclusion_about_its_type(folders) -> None:
    """A patient whose only MedicationStatement that could be the drug was unreadable is not 'no such drug'."""
    clean, bad, _ = folders
    after = by_patient(run_cli(*SCREEN, "--source", str(bad), "--patient", "excl-e14-3-mmf", env=env()).stdout)
    before = by_patient(run_cli(*SCREEN, "--source", str(clean), "--patient", "excl-e14-3-mmf", env=env()).stdout)
    reasons = [c.get("reason", "") for c in after["excl-e14-3-mmf"]["criteria"].values()]
    assert any("could not be read" in r and "MedicationStatement.ndjson line" in r for r in reasons)
    assert not any(r.startswith("no ") and "among" in r and "medication" in r for r in reasons), reasons
    assert before["excl-e14-3-mmf"] != after["excl-e14-3-mmf"]


def test_records_goes_on_past_every_bad_line(folders) -> None:
    _, bad, where = folders
    done = run_cli("records", "--source", str(bad), "--workers", "2", env=env())
    assert done.returncode == 0, done.stderr
    records = by_patient(done.stdout)
    assert len(records) == N_SAMPLE
    for pid in TARGETS:
        assert len(records[pid]["unreadable"]) == len(where[pid])
    assert "Observation.ndjson line" in done.stderr and "Traceback" not in done.stderr


def test_an_unreadable_patient_line_is_a_patient_not_read(tmp_path: Path) -> None:
    """A Patient resource that cannot be read: that patient gets no result (never one without its Patient), the
    run says it is incomplete (exit status 3), and everyone else is screened."""
    folder = copy_sample(tmp_path / "s")
    lines = (folder / "Patient.ndjson").read_bytes().splitlines()
    cut = lines[1][:200]  # the second patient's line, cut short
    named = orjson.loads(lines[1])["id"]
    lost = orjson.loads(lines[2])
    lost["id"] = ["not", "a", "string"]  # the third: no id to give it to
    lost_id = orjson.loads(lines[2])["id"]
    (folder / "Patient.ndjson").write_bytes(b"\n".join([lines[0], cut, orjson.dumps(lost), *lines[3:]]) + b"\n")
    for command in (["records"], list(SCREEN)):
        done = run_cli(*command, "--source", str(folder), env=env())
        assert done.returncode == 3, done.stderr
        got = by_patient(done.stdout)
        assert len(got) == N_SAMPLE - 2 and named not in got and lost_id not in got
        assert "INCOMPLETE: 2 patients" in done.stderr
        assert f"Patient/{named} not read (Patient.ndjson line 2)" in done.stderr
        assert "not read (Patient.ndjson line 3)" in done.stderr
