"""ServerSource against the real FHIR server: records of patients the test creates, set-asides, shared
Medications, skips, and a server that fails part-way through one patient."""

from __future__ import annotations

import io
import logging
from itertools import islice
from typing import Any

import pytest
import requests

from fhir_adapter.client import FhirClient, RetryPolicy
from fhir_adapter.client.capabilities import Capabilities
from fhir_adapter.errors import SourceError
from fhir_adapter.sources.server import SERVER_ERROR, ServerSource

pytestmark = [pytest.mark.server, pytest.mark.usefixtures("one_search_per_type")]
SYSTEM = "urn:fhir-adapter:test"


class Recording(requests.Session):
    """A real session that records every request and can answer chosen URLs with a 500 (a failing backend):
    every time, or their first ``fail_times`` times."""

    def __init__(self, fail_when: str | None = None, fail_times: int | None = None) -> None:
        super().__init__()
        self.calls: list[tuple[str, str]] = []
        self.fail_when = fail_when
        self.fail_times = fail_times

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.calls.append((method, url))
        if self.fail_when and self.fail_when in url and (
                self.fail_times is None or sum(self.fail_when in u for _, u in self.calls) <= self.fail_times):
            response = requests.Response()
            response.status_code, response.url, response._content = 500, url, b""
            response.raw = io.BytesIO()
            return response
        return super().request(method, url, *args, **kwargs)


def ref(resource: dict) -> dict:
    return {"reference": f"{resource['resourceType']}/{resource['id']}"}


@pytest.fixture
def population(fhir_base: str, tag: str) -> dict[str, Any]:
    """Two patients with Observations, Conditions, MedicationStatements and an allergy; one Observation
    entered-in-error; one MedicationStatement pointing at a shared Medication."""
    c = FhirClient(fhir_base)
    med = c.create({"resourceType": "Medication", "code": {"text": f"mycophenolate {tag}"}})
    p1 = c.create({"resourceType": "Patient", "identifier": [{"system": SYSTEM, "value": f"{tag}-1"}]})
    p2 = c.create({"resourceType": "Patient", "identifier": [{"system": SYSTEM, "value": f"{tag}-2"}]})
    for patient, n_obs in ((p1, 3), (p2, 1)):
        for i in range(n_obs):
            c.create({"resourceType": "Observation", "status": "final", "subject": ref(patient),
                      "code": {"text": f"ferritin {i}"}, "valueQuantity": {"value": 500 + i}})
        c.create({"resourceType": "Condition", "subject": ref(patient), "code": {"text": "dermatomyositis"}})
        c.create({"resourceType": "MedicationStatement", "status": "active", "subject": ref(patient),
                  "medicationReference": ref(med)})
    c.create({"resourceType": "Observation", "status": "entered-in-error", "subject": ref(p1),
              "code": {"text": "ferritin wrong"}})
    c.create({"resourceType": "AllergyIntolerance", "patient": ref(p1), "code": {"text": "penicillin"}})
    return {"p1": p1["id"], "p2": p2["id"], "med": med["id"]}


def test_records_of_two_patients(fhir_base: str, population: dict[str, Any]) -> None:
    session = Recording()
    client = FhirClient(fhir_base, session=session, strict=True)
    with ServerSource(fhir_base, client=client, page_size=2) as source:
        records = {r.patient_id: r for r in source.records([population["p1"], population["p2"]])}
    r1, r2 = records[population["p1"]], records[population["p2"]]
    assert r1.source == fhir_base
    assert len(r1.of("Observation")) == 3 and len(r2.of("Observation")) == 1  # page_size 2: 2 pages for r1
    assert len(r1.of("Condition")) == 1 and len(r1.of("AllergyIntolerance")) == 1
    assert [s.reason for s in r1.set_aside] == ["status entered-in-error"]
    assert r2.set_aside == []
    for record in (r1, r2):
        statement = record.of("MedicationStatement")[0]
        medication = record.resolve(statement["medicationReference"])
        assert medication is not None and medication["id"] == population["med"]
    med_reads = [u for m, u in session.calls if u.endswith(f"/Medication/{population['med']}")]
    assert med_reads == []  # it came with the statements (the server declares the include)
    assert any(f"MedicationStatement?subject=Patient/{population['p1']}&_include=MedicationStatement:medication&"
               in u for _, u in session.calls)
    assert any(f"Observation?subject=Patient/{population['p1']}&_count=2" in u for _, u in session.calls)
    assert any(f"AllergyIntolerance?patient=Patient/{population['p1']}" in u for _, u in session.calls)
    assert source.report.read["Observation"] == 4 and source.report.read["Patient"] == 2
    assert source.report.set_aside["Observation status entered-in-error"] == 1
    assert source.report.total_skipped == 0


def test_a_patient_the_server_fails_on_is_skipped_whole(fhir_base: str, population: dict[str, Any],
                                                        caplog: pytest.LogCaptureFixture) -> None:
    # Condition search of p1 fails after its Patient and Observations were read: no half record for p1
    session = Recording(fail_when=f"Condition?subject=Patient/{population['p1']}")
    client = FhirClient(fhir_base, session=session, retry=RetryPolicy(max_attempts=2, sleep=lambda s: None))
    source = ServerSource(fhir_base, client=client)
    with caplog.at_level(logging.WARNING):
        records = list(source.records([population["p1"], "missing-" + population["p2"], population["p2"]]))
    assert [r.patient_id for r in records] == [population["p2"]]
    assert source.report.not_read[SERVER_ERROR] == 1 and source.report.patients_not_read == 1
    assert source.report.skipped["patient not found on the server"] == 1
    message = source.report.not_read_example[SERVER_ERROR]
    assert f"Patient/{population['p1']}" in message and "HTTP 500" in message and "Condition?subject" in message
    assert "failed twice" in message
    assert source.report.read["Observation"] == 1  # only p2's: p1's partial reads are not counted
    assert source.report.set_aside == {}
    condition_sends = [u for _, u in session.calls if f"Condition?subject=Patient/{population['p1']}" in u]
    assert len(condition_sends) == 4  # 2 attempts in the run, 2 more at its end
    assert f"Patient/{population['p1']} not read" in caplog.text and "tried again at the end of the run" in caplog.text


def test_a_patient_the_server_failed_on_is_read_whole_at_the_end_of_the_run(
        fhir_base: str, population: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    p1, p2 = population["p1"], population["p2"]
    with ServerSource(fhir_base) as clean:
        expected = next(clean.records([p1]))
    # the Condition search of p1 fails on both attempts the client makes in the run, then answers
    session = Recording(fail_when=f"Condition?subject=Patient/{p1}", fail_times=2)
    client = FhirClient(fhir_base, session=session, retry=RetryPolicy(max_attempts=2, sleep=lambda s: None))
    source = ServerSource(fhir_base, client=client)
    with caplog.at_level(logging.WARNING):
        records = list(source.records([p1, p2]))
    assert [r.patient_id for r in records] == [p2, p1]  # p1 after the others
    assert records[1].resources == expected.resources and records[1].set_aside == expected.set_aside
    assert source.report.patients_not_read == 0 and source.report.read["Observation"] == 4
    assert f"Patient/{p1} not read" in caplog.text and "tried again at the end of the run" in caplog.text
    # read again whole, from its Patient: not only the search that failed
    after = [u for _, u in session.calls][session.calls.index(("GET", f"{fhir_base}/Patient/{p2}")):]
    assert any(u.endswith(f"/Patient/{p1}") for u in after)
    assert any(f"Observation?subject=Patient/{p1}" in u for u in after)


def test_a_server_that_is_down_stops_the_run(fhir_base: str, population: dict[str, Any]) -> None:
    session = Recording(fail_when="/Observation?")
    client = FhirClient(fhir_base, session=session, retry=RetryPolicy(max_attempts=1))
    source = ServerSource(fhir_base, client=client, max_failures_in_a_row=2, concurrency=1)  # one at a time
    with pytest.raises(SourceError) as err:
        list(source.records([population["p1"], population["p2"], population["p1"]]))
    message = str(err.value)
    assert "2 patients in a row could not be read; the server looks down, so the run stopped" in message
    assert "0 patients read, 2 not read" in message and "HTTP 500" in message
    assert source.report.patients_not_read == 2  # the two waiting to be tried again
    assert sum("/Observation?" in u for _, u in session.calls) == 2  # the third patient was never tried


def test_the_stop_also_applies_when_patients_are_tried_again(fhir_base: str, population: dict[str, Any],
                                                             tag: str) -> None:
    p3 = FhirClient(fhir_base).create({"resourceType": "Patient", "identifier": [{"system": SYSTEM, "value": tag}]})
    ids = [population["p1"], "missing-a", population["p2"], "missing-b", p3["id"]]
    # every Condition search fails; in the run, the patients not on the server (an answer: the server is up)
    # come between the failures, so none are in a row until the end-of-run pass tries the three again
    session = Recording(fail_when="/Condition?subject=Patient/")
    client = FhirClient(fhir_base, session=session, retry=RetryPolicy(max_attempts=1))
    source = ServerSource(fhir_base, client=client, max_failures_in_a_row=2, concurrency=1)  # one at a time
    with pytest.raises(SourceError) as err:
        list(source.records(ids))
    assert "2 patients in a row could not be read; the server looks down, so the run stopped" in str(err.value)
    assert "0 patients read, 3 not read" in str(err.value)
    assert source.report.patients_not_read == 3  # p3 was never tried again: counted too
    assert sum(f"Condition?subject=Patient/{p3['id']}" in u for _, u in session.calls) == 1
    # when the last patients tried again fail, there is nothing left to save by stopping: the run ends
    source = ServerSource(fhir_base, client=FhirClient(fhir_base, session=Recording(fail_when="/Condition?subject="),
                                                       retry=RetryPolicy(max_attempts=1)), max_failures_in_a_row=2)
    assert list(source.records(ids[:3])) == []
    assert source.report.patients_not_read == 2


def test_population_mode_pages_through_patients_lazily(fhir_base: str, population: dict[str, Any]) -> None:
    session = Recording()
    source = ServerSource(fhir_base, client=FhirClient(fhir_base, session=session), page_size=2, concurrency=1)
    first = [r.patient_id for r in islice(source.records(), 3)]
    listed = [p for p in FhirClient(fhir_base).search("Patient", count=2)]
    replaced = {p["id"] for p in listed  # merged (another test's patients): read with the Patient replacing them
                if any(link.get("type") == "replaced-by" for link in p.get("link", ()))}
    expected = [p["id"] for p in listed if p["id"] not in replaced][:3]
    assert first == expected
    links = [u for _, u in session.calls if "/Patient?_elements=id,link" in u]
    assert links and all("_count=1000" in u for u in links)  # the merges first: one pass of small answers
    patient_pages = [u for _, u in session.calls if "/Patient?" in u and u not in links and "_id=" not in u]
    needed = [p["id"] for p in listed].index(expected[2]) // 2 + 1
    assert len(patient_pages) == needed  # 3 patients from pages of 2: no page beyond the one they are on
    assert not any("/Patient/" in u for _, u in session.calls)  # the searched Patient is not read again


def test_client_side_filter_when_the_server_declares_no_patient_search(
        fhir_base: str, population: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    client = FhirClient(fhir_base)
    caps = client.capabilities
    params = dict(caps.search_params)
    params["Condition"] = frozenset({"_id", "code"})  # a server without Condition?subject / ?patient
    client._capabilities = Capabilities(caps.fhir_version, params, caps.operations)
    source = ServerSource(fhir_base, client=client)
    with caplog.at_level(logging.WARNING, logger="fhir_adapter.sources"):
        record = next(source.records([population["p2"]]))
    assert [c["subject"]["reference"] for c in record.of("Condition")] == [f"Patient/{population['p2']}"]
    assert "reading every Condition and keeping the patient's on the client" in caplog.text


def test_resources_streams_types_and_skips_bad_ones(fhir_base: str, tag: str) -> None:
    client = FhirClient(fhir_base)
    patient = client.create({"resourceType": "Patient", "identifier": [{"system": SYSTEM, "value": tag}]})

    class Tampering(requests.Session):
        """The real answer, with one entry replaced by something that is not a FHIR resource."""

        def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
            response = super().request(method, url, *args, **kwargs)
            if "/Patient?" in url:
                response._content = response.content.replace(b'"resourceType":"Patient"',
                                                             b'"resourceType":"Pxtient"', 1)
            return response

    source = ServerSource(fhir_base, client=FhirClient(fhir_base, session=Tampering()), page_size=1000)
    got = list(source.resources(["Patient"]))
    assert all(r["resourceType"] == "Patient" for r, _ in got)
    assert all(w.startswith(f"GET {fhir_base}/Patient?_count=1000 (page ") for _, w in got)
    assert source.report.skipped["unknown resourceType"] == 1
    mine = [r for r, _ in got if r["id"] == patient["id"]]
    assert len(mine) <= 1  # ours is there unless it was the one entry tampered with
