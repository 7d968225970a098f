"""``fhir-adapter reidentify``: the hospital finds the patient behind a pseudonym of an export, says which it
could not find, and refuses a key that did not make the export."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from fhir_adapter.errors import ConfigError
from fhir_adapter.export.deidentify import Pseudonymizer
from fhir_adapter.export.reidentify import find, mrns, parse_pseudonym
from tests.export.test_export_folder import KEY_TEXT
from tests.test_cli import run_cli

GENERATOR = Path(__file__).resolve().parents[3] / "shared" / "bench" / "gen_population.py"
MADE_UP = "Patient/0123456789abcdef0123456789abcdef"


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The sample's PROMIS-MDA5 candidates exported under ``KEY_TEXT``, with the screening lines."""
    folder = tmp_path_factory.mktemp("reid")
    key = folder / "export.key"
    key.write_text(KEY_TEXT + "\n")
    screened = run_cli("-q", "screen", "--study", "promis-mda5", "--as-of", "2026-06-30", "--source", "sample")
    assert screened.returncode == 0, screened.stderr
    (folder / "screen.jsonl").write_text(screened.stdout)
    done = run_cli("export", str(folder / "screen.jsonl"), "--key-file", str(key), "--out", str(folder / "out"))
    assert done.returncode == 0, done.stderr
    return {"key": key, "out": folder / "out", "screen": folder / "screen.jsonl", "dir": folder}


def _exported(export: dict[str, Path]) -> list[tuple[str, str]]:
    """(pseudonym reference, real Patient reference) of each exported Bundle: the Bundles follow the selected
    screening lines in order."""
    wanted = [r for r in map(orjson.loads, export["screen"].read_bytes().splitlines())
              if r["status"] in ("candidate", "potential-candidate")]
    bundles = [orjson.loads(x) for x in (export["out"] / "Bundle.ndjson").read_bytes().splitlines()]
    return [(b["entry"][0]["resource"]["individual"]["reference"], r["patient"])
            for b, r in zip(bundles, wanted, strict=True)]


def test_finds_the_patients_behind_pseudonyms_of_the_export(export) -> None:
    pairs = _exported(export)[::7]
    assert len(pairs) >= 3
    done = run_cli("reidentify", *(p for p, _ in pairs), "--key-file", str(export["key"]), "--source", "sample",
                   "--manifest", str(export["out"] / "manifest.json"))
    assert done.returncode == 0, done.stderr
    rows = [line.split("\t") for line in done.stdout.splitlines()]
    assert [(pseudonym, patient) for pseudonym, patient, _mrn in rows] == pairs
    assert f"{len(pairs)} of {len(pairs)} found" in done.stderr


def test_a_made_up_pseudonym_is_not_found_and_the_others_are(export) -> None:
    (pseudonym, patient), = _exported(export)[:1]
    done = run_cli("reidentify", MADE_UP, pseudonym.removeprefix("Patient/"), "--key-file", str(export["key"]),
                   "--source", "sample", "--manifest", str(export["out"]))
    assert done.returncode == 1
    assert done.stdout.splitlines() == [f"{pseudonym}\t{patient}\t"]
    assert f"{MADE_UP}: not found among the Patients of sample" in done.stderr
    assert "1 of 2 found" in done.stderr


def test_a_wrong_key_is_refused_with_the_manifest(export, tmp_path) -> None:
    (pseudonym, _patient), = _exported(export)[:1]
    wrong = tmp_path / "wrong.key"
    wrong.write_text(KEY_TEXT[::-1])
    done = run_cli("reidentify", pseudonym, "--key-file", str(wrong), "--source", "sample",
                   "--manifest", str(export["out"] / "manifest.json"))
    assert done.returncode == 1 and done.stdout == ""
    assert "wrong key" in done.stderr and "not found" not in done.stderr
    manifest = orjson.loads((export["out"] / "manifest.json").read_bytes())
    assert manifest["deidentification"]["key_fingerprint"] in done.stderr
    # without --manifest the wrong key finds nothing, and says how to check the key
    done = run_cli("reidentify", pseudonym, "--key-file", str(wrong), "--source", "sample")
    assert done.returncode == 1 and "not found" in done.stderr and "--manifest" in done.stderr


def test_a_folder_without_manifest_is_not_taken_for_one(export, tmp_path) -> None:
    done = run_cli("reidentify", MADE_UP, "--key-file", str(export["key"]), "--source", "sample",
                   "--manifest", str(tmp_path))
    assert done.returncode == 1 and "manifest.json" in done.stderr and "incomplete" in done.stderr


def test_a_generated_population_gives_the_mrn(tmp_path) -> None:
    """150 generated patients, Patient identifiers typed MR: the pseudonym of one gives its id and MRN."""
    if not GENERATOR.exists():
        pytest.skip("../shared/bench/gen_population.py is not beside the project")
    pop = tmp_path / "pop"
    subprocess.run([sys.executable, str(GENERATOR), "150", "--out", str(pop)], check=True,
                   stdout=subprocess.DEVNULL, timeout=300)
    patients = [orjson.loads(x) for x in (pop / "Patient.ndjson").read_bytes().splitlines()]
    chosen = patients[97]
    mrn = [i["value"] for i in chosen["identifier"] if i.get("type", {}).get("coding", [{}])[0].get("code") == "MR"]
    assert mrn
    key = tmp_path / "k"
    key.write_text(KEY_TEXT)
    pseudonym = Pseudonymizer(KEY_TEXT.encode()).pseudonym("Patient", chosen["id"])
    done = run_cli("reidentify", f"Patient/{pseudonym}", "--key-file", str(key), "--source", str(pop))
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"Patient/{pseudonym}\tPatient/{chosen['id']}\t{','.join(mrn)}\n"


def test_patients_are_streamed_and_reading_stops_once_all_are_found() -> None:
    p = Pseudonymizer(KEY_TEXT.encode())
    read = []

    def patients():
        for i in range(10_000):
            read.append(i)
            yield {"resourceType": "Patient", "id": f"p{i}"}

    wanted = [p.pseudonym("Patient", "p3"), p.pseudonym("Patient", "p41")]
    assert [(f.patient_id, f.pseudonym) for f in find(wanted, patients(), p)] == [("p3", wanted[0]),
                                                                                 ("p41", wanted[1])]
    assert read[-1] == 41


def test_mrns_are_the_identifiers_typed_mr() -> None:
    mr = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]}
    patient = {"identifier": [{"system": "urn:x", "value": "SSN-1"}, {"type": mr, "value": "12345"},
                              {"type": {"coding": [{"system": "urn:other", "code": "MR"}]}, "value": "no"},
                              {"type": mr}]}
    assert mrns(patient) == ("12345",)
    assert mrns({}) == ()


@pytest.mark.parametrize("text", ["Observation/0123456789abcdef0123456789abcdef", "0123456789abcdef",
                                  "Patient/0123456789ABCDEF0123456789ABCDEFXX", "Patient/h-123"])
def test_what_is_not_a_patient_pseudonym_is_refused(text) -> None:
    with pytest.raises(ConfigError, match="not a Patient pseudonym"):
        parse_pseudonym(text)
    assert parse_pseudonym("http://x/fhir/Patient/0123456789abcdef0123456789abcdef") == "0123456789abcdef" * 2


def test_the_fingerprint_names_the_key_without_giving_it() -> None:
    a, b = Pseudonymizer(KEY_TEXT.encode()), Pseudonymizer(KEY_TEXT[::-1].encode())
    assert a.fingerprint() == Pseudonymizer(KEY_TEXT.encode()).fingerprint() != b.fingerprint()
    assert len(a.fingerprint()) == 16 and a.fingerprint() not in KEY_TEXT


@pytest.mark.server
def test_a_fhir_server_source(fhir_base, tmp_path) -> None:
    """The Patients of a real FHIR server, paged through: the pseudonym of one it holds gives its id and MRN."""
    import uuid

    from fhir_adapter.client import FhirClient

    mr = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]}
    tag = uuid.uuid4().hex[:8]
    client = FhirClient(fhir_base)
    made = [client.create({"resourceType": "Patient", "identifier": [
        {"type": mr, "system": "urn:fhir-adapter:test-mrn", "value": f"{tag}-{i}"}]}) for i in range(3)]
    key = tmp_path / "k"
    key.write_text(KEY_TEXT)
    pseudonym = Pseudonymizer(KEY_TEXT.encode()).pseudonym("Patient", made[1]["id"])
    done = run_cli("reidentify", f"Patient/{pseudonym}", MADE_UP, "--key-file", str(key), "--source", fhir_base)
    assert done.returncode == 1
    assert done.stdout == f"Patient/{pseudonym}\tPatient/{made[1]['id']}\t{tag}-1\n"
    assert f"{MADE_UP}: not found" in done.stderr
