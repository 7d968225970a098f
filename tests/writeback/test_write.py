"""Write-back against the real FHIR server (issue 6): write and read back, idempotent re-runs, only changed
results updated, people's decisions stand, all or nothing, no duplicates from concurrent runs."""

from __future__ import annotations

import copy
import threading

import pytest

from fhir_adapter.client import FhirClient
from fhir_adapter.errors import FhirError
from fhir_adapter.writeback import build
from fhir_adapter.writeback.validate import check
from fhir_adapter.writeback.write import WriteBack

pytestmark = pytest.mark.server
STUDY = "NCT07377058"


def _result(pid: str, i1: str = "met", status: str = "candidate") -> dict:
    criteria = {cid: {"result": "met" if cid.startswith("I") else "not-met", "reason": f"{cid} reason",
                      "evidence": [f"Observation/{pid}-{cid.lower()}"]} for cid in ("I1", "I2", "E1", "E2")}
    criteria["I1"]["result"] = i1
    return {"patient": f"Patient/{pid}", "study": STUDY, "as_of": "2026-06-30", "status": status,
            "reason": "test", "criteria": criteria}


@pytest.fixture
def client(fhir_base):
    with FhirClient(fhir_base) as c:
        yield c


def _versions(client: FhirClient, rtype: str, value: str) -> str:
    system = build.SUBJECT_SYSTEM if rtype == "ResearchSubject" else build.OBSERVATION_SYSTEM
    found = list(client.search(rtype, f"identifier={system}|{value}"))
    assert len(found) == 1, found
    return found[0]["meta"]["versionId"]


def test_write_read_back_and_rerun_writes_nothing(client, tag) -> None:
    pid = f"wb-{tag}"
    resources = build.screening_resources(_result(pid))
    first = WriteBack(client).write(pid, resources, STUDY)
    assert first.error is None and not first.conflicts
    assert any(k.startswith("ResearchSubject?") for k in first.written)
    stored = list(client.search("ResearchSubject", f"identifier={build.SUBJECT_SYSTEM}|{STUDY}/{pid}"))
    assert len(stored) == 1 and stored[0]["status"] == "candidate"
    check({k: v for k, v in stored[0].items() if k != "id"} | {"meta": {"tag": stored[0]["meta"]["tag"]}})
    obs = list(client.search("Observation", f"identifier={build.OBSERVATION_SYSTEM}|{STUDY}/{pid}/screening"))
    assert len(obs) == 1 and len(obs[0]["component"]) == 4
    assert "assignedArm" not in stored[0] and "actualArm" not in stored[0]
    prov = list(client.search("Provenance", {"_tag": f"{build.CS}/adapter-tag|derived", "_sort": "-_lastUpdated",
                                             "_count": 20}, count=20))
    assert any(f"ResearchSubject/{stored[0]['id']}" in [t["reference"] for t in p["target"]] for p in prov)

    second = WriteBack(client).write(pid, build.screening_resources(_result(pid)), STUDY)
    assert second.written == [] and second.bundle is None and second.error is None
    assert _versions(client, "ResearchSubject", f"{STUDY}/{pid}") == "1"
    assert _versions(client, "Observation", f"{STUDY}/{pid}/screening") == "1"


def test_changed_source_updates_only_affected_results(client, tag) -> None:
    pid = f"wb-{tag}"
    writer = WriteBack(client)
    writer.write(pid, build.screening_resources(_result(pid)), STUDY)
    changed = writer.write(pid, build.screening_resources(_result(pid, i1="unknown")), STUDY)
    assert changed.written == [f"Observation?identifier={build.OBSERVATION_SYSTEM}|{STUDY}/{pid}/screening"]
    assert _versions(client, "Observation", f"{STUDY}/{pid}/screening") == "2"
    assert _versions(client, "ResearchSubject", f"{STUDY}/{pid}") == "1"
    ineligible = writer.write(pid, build.screening_resources(_result(pid, i1="not-met", status="ineligible")), STUDY)
    assert len(ineligible.written) == 2
    assert _versions(client, "ResearchSubject", f"{STUDY}/{pid}") == "2"


def test_person_set_status_survives(client, tag) -> None:
    pid = f"wb-{tag}"
    writer = WriteBack(client)
    writer.write(pid, build.screening_resources(_result(pid)), STUDY)
    stored = next(client.search("ResearchSubject", f"identifier={build.SUBJECT_SYSTEM}|{STUDY}/{pid}"))
    stored["status"] = "on-study"  # a coordinator enrolled the patient
    client.update(stored)
    again = writer.write(pid, build.screening_resources(_result(pid, i1="not-met", status="ineligible")), STUDY)
    assert len(again.conflicts) == 1 and "on-study" in again.conflicts[0]
    after = next(client.search("ResearchSubject", f"identifier={build.SUBJECT_SYSTEM}|{STUDY}/{pid}"))
    assert after["status"] == "on-study" and after["meta"]["versionId"] == "2"


def test_invalid_resource_sends_nothing(client, tag) -> None:
    pid = f"wb-{tag}"
    resources = build.screening_resources(_result(pid))
    resources[1]["status"] = "bogus"
    outcome = WriteBack(client).write(pid, resources, STUDY)
    assert outcome.error and "Observation.status" in outcome.error and outcome.bundle is None
    assert list(client.search("ResearchSubject", f"identifier={build.SUBJECT_SYSTEM}|{STUDY}/{pid}")) == []


def test_transaction_with_bad_entry_leaves_nothing(client, tag) -> None:
    pid = f"wb-{tag}"
    outcome = WriteBack(client).plan(pid, build.screening_resources(_result(pid)), STUDY)
    bundle = copy.deepcopy(outcome.bundle)
    bundle["entry"][-2]["resource"]["bogusElement"] = 1  # the server rejects it: the whole Bundle fails
    with pytest.raises(FhirError):
        client.transaction(bundle)
    assert list(client.search("ResearchSubject", f"identifier={build.SUBJECT_SYSTEM}|{STUDY}/{pid}")) == []


def test_concurrent_runs_make_no_duplicates(fhir_base, tag) -> None:
    pid = f"wb-{tag}"
    errors: list[str] = []

    def run() -> None:
        with FhirClient(fhir_base) as c:
            outcome = WriteBack(c).write(pid, build.screening_resources(_result(pid)), STUDY)
            if outcome.error:
                errors.append(outcome.error)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with FhirClient(fhir_base) as c:
        assert len(list(c.search("ResearchSubject", f"identifier={build.SUBJECT_SYSTEM}|{STUDY}/{pid}"))) == 1
        assert len(list(c.search("Observation", f"identifier={build.OBSERVATION_SYSTEM}|{STUDY}/{pid}/screening"))) == 1
        assert len(list(c.search("ResearchStudy", "identifier=https://clinicaltrials.gov|NCT07377058"))) == 1


def test_response_write_back(client, tag) -> None:
    pid = f"wb-{tag}"
    result = {"patient": f"Patient/{pid}", "study": "NCT04966884", "follow_up": {"date": "2026-05-26"},
              "tis": 62.5, "category": "major", "inactive_disease": None,
              "measures": {"phga": {"points": 20.0, "follow_up": {"source": f"Observation/{pid}-1"}}}}
    writer = WriteBack(client)
    first = writer.write(pid, build.response_observations(result), "NCT04966884")
    assert first.error is None and len([k for k in first.written if k.startswith("Observation")]) == 3
    again = writer.write(pid, build.response_observations({**result, "tis": 40.0, "category": "moderate"}),
                         "NCT04966884")
    assert len(again.written) == 2 and len(again.unchanged) == 1


def test_existing_resources_are_updated_by_id_at_the_version_read(client, tag) -> None:
    pid = f"wb-{tag}"
    writer = WriteBack(client)
    writer.write(pid, build.screening_resources(_result(pid)), STUDY)
    stored = next(client.search("ResearchSubject", f"identifier={build.SUBJECT_SYSTEM}|{STUDY}/{pid}"))
    plan = writer.plan(pid, build.screening_resources(_result(pid, i1="not-met", status="ineligible")), STUDY)
    subject = next(e for e in plan.bundle["entry"] if e["resource"]["resourceType"] == "ResearchSubject")
    assert subject["request"] == {"method": "PUT", "url": f"ResearchSubject/{stored['id']}", "ifMatch": 'W/"1"'}
    assert subject["resource"]["id"] == stored["id"]
    prov = plan.bundle["entry"][-1]["resource"]
    assert {"reference": f"ResearchSubject/{stored['id']}"} in prov["target"]  # relative, not the server's URL


def test_a_status_set_between_read_and_write_is_not_overwritten(client, tag) -> None:
    """A coordinator enrols the patient after the adapter read the ResearchSubject and before its transaction:
    the stale version fails the transaction (412), the patient is read again and the person's status stands."""
    pid = f"wb-{tag}"
    writer = WriteBack(client)
    writer.write(pid, build.screening_resources(_result(pid)), STUDY)
    read = writer.current
    enrolled: list[str] = []

    def current_then_enrol(resource):
        found = read(resource)
        if resource["resourceType"] == "ResearchSubject" and not enrolled:
            person = copy.deepcopy(found)
            person["status"] = "on-study"
            enrolled.append(client.update(person)["meta"]["versionId"])
        return found

    writer.current = current_then_enrol
    outcome = writer.write(pid, build.screening_resources(_result(pid, i1="not-met", status="ineligible")), STUDY)
    assert enrolled == ["2"]
    assert outcome.error is None and len(outcome.conflicts) == 1 and "on-study" in outcome.conflicts[0]
    after = next(client.search("ResearchSubject", f"identifier={build.SUBJECT_SYSTEM}|{STUDY}/{pid}"))
    assert after["status"] == "on-study" and after["meta"]["versionId"] == "2"
    assert _versions(client, "Observation", f"{STUDY}/{pid}/screening") == "2"  # the new result is still written


def test_a_resource_changing_at_every_read_gives_an_error_and_writes_nothing(client, tag) -> None:
    pid = f"wb-{tag}"
    writer = WriteBack(client)
    writer.write(pid, build.screening_resources(_result(pid)), STUDY)
    read = writer.current

    def current_then_touch(resource):
        found = read(resource)
        if resource["resourceType"] == "Observation":  # another writer updates it every time
            touched = copy.deepcopy(found)
            touched["status"] = "amended" if touched["status"] != "amended" else "final"
            client.update(touched)
        return found

    writer.current = current_then_touch
    outcome = writer.write(pid, build.screening_resources(_result(pid, i1="unknown")), STUDY)
    assert outcome.error is not None and "If-Match" in outcome.error
    assert outcome.written == []
    assert _versions(client, "Observation", f"{STUDY}/{pid}/screening") == "3"  # the two touches, no write
