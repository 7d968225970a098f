"""Write-back and the entry cohort, end to end on the real server: a patient out of the entry cohort (PROMIS-MDA5
I2 not met) has nothing new to follow, so nothing is created for them; one written while in the cohort and then
ruled out of it has their ResearchSubject and screening Observation updated to the short result, never left
stale."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import orjson
import pytest

from fhir_adapter.client import FhirClient
from fhir_adapter.writeback.build import OBSERVATION_SYSTEM, SUBJECT_SYSTEM

pytestmark = pytest.mark.server
LOINC, SCT, ICD10CM = "http://loinc.org", "http://snomed.info/sct", "http://hl7.org/fhir/sid/icd-10-cm"
POSITIVE, NEGATIVE = "10828004", "260385009"
AS_OF = "2026-06-30"


def chart(pid: str, anti_mda5: str) -> list[dict[str, Any]]:
    """A woman of 45 with dermatomyositis (ICD-10-CM M33.10) and one anti-MDA5 result (LOINC 107563-9)."""
    subject = {"reference": f"Patient/{pid}"}
    return [
        {"resourceType": "Patient", "id": pid, "gender": "female", "birthDate": "1981-03-02"},
        {"resourceType": "Condition", "id": f"{pid}-dm", "subject": subject, "onsetDateTime": "2026-03-01",
         "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                        "code": "active"}]},
         "code": {"coding": [{"system": ICD10CM, "code": "M33.10"}], "text": "dermatomyositis"}},
        {"resourceType": "Observation", "id": f"{pid}-mda5", "subject": subject, "status": "final",
         "code": {"coding": [{"system": LOINC, "code": "107563-9"}]}, "effectiveDateTime": "2026-06-01",
         "valueCodeableConcept": {"coding": [{"system": SCT, "code": anti_mda5}]}},
    ]


def put(client: FhirClient, resources: list[dict[str, Any]]) -> None:
    client.transaction({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in resources]})


def screen(fhir_base: str, pid: str) -> tuple[dict[str, Any], str]:
    done = subprocess.run(
        [sys.executable, "-m", "fhir_adapter.cli.main", "screen", "--study", "NCT07377058", "--source", fhir_base,
         "--as-of", AS_OF, "--patient", pid, "--write-back"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return orjson.loads(done.stdout), done.stderr


def on_server(client: FhirClient, pid: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The adapter's ResearchSubjects and screening Observations of the patient, by identifier."""
    subjects = list(client.search("ResearchSubject", {"identifier": f"{SUBJECT_SYSTEM}|NCT07377058/{pid}"}))
    obs = list(client.search("Observation", {"identifier": f"{OBSERVATION_SYSTEM}|NCT07377058/{pid}/screening"}))
    return subjects, obs


def components(obs: dict[str, Any]) -> dict[str, str]:
    return {c["code"]["coding"][0]["code"]: c["valueCodeableConcept"]["coding"][0]["code"] for c in obs["component"]}


def test_a_patient_ruled_out_of_the_cohort_has_what_was_written_updated(fhir_base: str, tag: str) -> None:
    """Written while anti-MDA5 positive (in the cohort: every criterion); the antibody result corrected to
    negative, the next screen rules the patient out by I2: the ResearchSubject becomes ineligible and the screening
    Observation holds the short result (I2 not met, the reason saying why nothing else was evaluated)."""
    pid = f"cohort-ruled-out-{tag}"
    with FhirClient(fhir_base) as client:
        put(client, chart(pid, POSITIVE))
        first, _ = screen(fhir_base, pid)
        assert first["cohort"] == "in" and first["status"] != "ineligible"
        [subject], [obs] = on_server(client, pid)
        assert subject["status"] == first["status"] and components(obs)["I2"] == "met" and len(obs["component"]) >= 40

        mda5 = client.read("Observation", f"{pid}-mda5")
        mda5["valueCodeableConcept"] = {"coding": [{"system": SCT, "code": NEGATIVE}]}
        client.update(mda5)
        second, err = screen(fhir_base, pid)
        assert second["cohort"] == "out" and list(second["criteria"]) == ["I2"]
        [subject2], [obs2] = on_server(client, pid)
        assert (subject2["id"], obs2["id"]) == (subject["id"], obs["id"])  # updated, not duplicated
        assert subject2["status"] == "ineligible" and subject2["meta"]["versionId"] != subject["meta"]["versionId"]
        assert components(obs2) == {"I2": "not-met"}
        assert obs2["valueCodeableConcept"]["coding"][0]["code"] == "ineligible"
        assert obs2["valueCodeableConcept"]["text"] == second["reason"]
        assert second["reason"].startswith("out of the entry cohort by I2")
        assert {d["reference"] for d in obs2["derivedFrom"]} == {f"Patient/{pid}", f"Observation/{pid}-mda5",
                                                                  f"Condition/{pid}-dm"}
        assert "wrote 2 resources" in err

        _, again = screen(fhir_base, pid)  # nothing changed since: nothing written
        assert "wrote 0 resources" in again and "not followed" not in again
        assert on_server(client, pid) == ([subject2], [obs2])


def test_a_patient_out_of_the_cohort_from_the_start_leaves_nothing_on_the_server(fhir_base: str, tag: str) -> None:
    """Dermatomyositis, anti-MDA5 negative: out of the entry cohort; no ResearchSubject, no screening Observation,
    no Provenance is written, and standard error says why."""
    pid = f"cohort-never-in-{tag}"
    with FhirClient(fhir_base) as client:
        put(client, chart(pid, NEGATIVE))
        result, err = screen(fhir_base, pid)
        assert result["status"] == "ineligible" and result["cohort"] == "out"
        assert on_server(client, pid) == ([], [])
        assert list(client.search("Provenance", {"entity": f"Patient/{pid}"})) == []
    assert "wrote 0 resources" in err and "1 patients out of the entry cohort and not followed" in err
