"""ExportSource: ``$export`` end to end on the real server, and the polling / manifest / timeout
behaviour a real server will not show on demand (played by ``responses``)."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import responses

from fhir_adapter.client import BulkExport, FhirClient, RetryPolicy
from fhir_adapter.errors import FhirError, SourceError
from fhir_adapter.sources.bulk_export import EXPORT_ERROR, ExportSource

SYSTEM = "urn:fhir-adapter:test"


@pytest.mark.server
def test_export_end_to_end_with_type_and_since(fhir_base: str, tag: str) -> None:
    client = FhirClient(fhir_base)
    old = client.create({"resourceType": "Patient", "identifier": [{"system": SYSTEM, "value": f"{tag}-old"}]})
    since = datetime.fromisoformat(old["meta"]["lastUpdated"].replace("Z", "+00:00")) + timedelta(milliseconds=1)
    time.sleep(0.01)
    patient = client.create({"resourceType": "Patient", "identifier": [{"system": SYSTEM, "value": tag}]})
    subject = {"reference": f"Patient/{patient['id']}"}
    for status in ("final", "entered-in-error"):
        client.create({"resourceType": "Observation", "status": status, "subject": subject,
                       "code": {"text": f"CK {tag}"}, "valueQuantity": {"value": 250}})
    client.create({"resourceType": "Condition", "subject": subject, "code": {"text": "not exported"}})

    source = ExportSource(fhir_base, types=["Patient", "Observation"], since=since, workers=1,
                          poll_interval=0.1)
    with source:
        records = list(source.records([patient["id"], old["id"]]))
        folder = source.folder
        assert folder is not None and folder.is_dir()
        assert {p.name.split(".")[0] for p in folder.iterdir()} <= {"Patient", "Observation"}
        manifest = source.manifest
        assert manifest is not None
        assert "_since=" in manifest.request and "_type=Patient,Observation" in manifest.request
        assert {o["type"] for o in manifest.output} == {"Patient", "Observation"}  # no Condition: _type
        exported = [r for r, _ in source.resources(["Patient"])]
    assert not folder.exists()  # removed on close
    assert [r.patient_id for r in records] == [patient["id"]]  # the old Patient is before _since
    assert old["id"] not in {p["id"] for p in exported}
    record = records[0]
    assert [o["status"] for o in record.of("Observation")] == ["final"]
    assert [s.reason for s in record.set_aside] == ["status entered-in-error"]
    assert record.of("Condition") == []
    assert source.report.read["Observation"] >= 1


@pytest.mark.server
def test_export_keeps_a_chosen_folder_and_refuses_a_used_one(fhir_base: str, tag: str, tmp_path: Path) -> None:
    client = FhirClient(fhir_base)
    made = client.create({"resourceType": "Patient", "identifier": [{"system": SYSTEM, "value": tag}]})
    since = made["meta"]["lastUpdated"]
    with ExportSource(fhir_base, types=["Patient"], since=since, workdir=tmp_path, poll_interval=0.1) as source:
        ids = [r["id"] for r, _ in source.resources()]
    assert made["id"] in ids
    assert list(tmp_path.glob("Patient.*.ndjson"))  # kept
    with pytest.raises(SourceError, match="already holds NDJSON"), ExportSource(
            fhir_base, types=["Patient"], workdir=tmp_path) as again:
        list(again.resources())


BASE = "http://ehr.test/fhir"
STATUS = "http://ehr.test/fhir/bulk-status/job1"
FILES = "http://files.test/job1"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


def manifest(error: list[dict] | None = None, output: list[dict] | None = None) -> dict:
    return {"transactionTime": "2026-01-01T00:00:00Z", "request": f"{BASE}/$export", "requiresAccessToken": True,
            "output": [{"type": "Patient", "url": f"{FILES}/Patient.ndjson", "count": 2}] if output is None else output,
            "error": error or []}


def client() -> FhirClient:
    return FhirClient(BASE, retry=RetryPolicy(max_attempts=2, sleep=lambda s: None))


@responses.activate
def test_polling_honours_retry_after_and_counts_manifest_errors(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    responses.get(f"{BASE}/$export", status=202, headers={"Content-Location": STATUS})
    responses.get(STATUS, status=202, headers={"Retry-After": "5", "X-Progress": "10% done"})
    responses.get(STATUS, status=202, headers={"X-Progress": "60% done"})
    responses.get(STATUS, json=manifest(error=[{"type": "OperationOutcome", "url": f"{FILES}/err.ndjson"}]))
    responses.get(f"{FILES}/Patient.ndjson",
                  body=b'{"resourceType":"Patient","id":"a"}\n{"resourceType":"Patient","id":"b"}\n')
    responses.get(f"{FILES}/err.ndjson", body=(
        b'{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"processing",'
        b'"diagnostics":"Observation/9 could not be exported"}]}\n'))
    responses.delete(STATUS, status=202)
    source = ExportSource(BASE, client=client(), types=["Patient"], since="2026-01-01T00:00:00Z",
                          poll_interval=2, sleep=clock.sleep, clock=clock, workers=1)
    with caplog.at_level("INFO"):
        ids = sorted(r["id"] for r, _ in source.resources())
    source.close()
    assert ids == ["a", "b"]
    assert clock.waits == [5.0, 2.0]  # the server's Retry-After, then the default interval
    kick_off = responses.calls[0].request
    assert kick_off.headers["Prefer"] == "respond-async" and kick_off.headers["Accept"] == "application/fhir+json"
    assert "_type=Patient&_since=2026-01-01T00:00:00Z" in kick_off.url
    assert "60% done" in caplog.text
    assert source.report.skipped[EXPORT_ERROR] == 1
    assert "Observation/9 could not be exported" in source.report.example[EXPORT_ERROR]
    assert responses.calls[-1].request.method == "DELETE"  # the server may drop its copies


@responses.activate
def test_export_times_out_and_cancels_the_job() -> None:
    clock = Clock()
    responses.get(f"{BASE}/Patient/$export", status=202, headers={"Content-Location": STATUS})
    responses.get(STATUS, status=202, headers={"Retry-After": "30"})
    responses.delete(STATUS, status=202)
    source = ExportSource(BASE, client=client(), level="patient", export_timeout=100, sleep=clock.sleep,
                          clock=clock)
    with pytest.raises(SourceError, match="did not finish within 100 s"):
        list(source.records())
    assert clock.waits == [30.0, 30.0, 30.0]
    assert responses.calls[-1].request.method == "DELETE"
    assert source.folder is not None
    source.close()
    assert not source.folder.exists()


@responses.activate
def test_kick_off_refused_carries_the_outcome() -> None:
    responses.get(f"{BASE}/$export", status=400, json={
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "invalid", "diagnostics": "_type Foo is not supported"}]})
    with pytest.raises(SourceError) as err, ExportSource(BASE, client=client(), types=["Foo"]) as source:
        list(source.resources())
    assert "_type Foo is not supported" in str(err.value) and "HTTP 400" in str(err.value)


@responses.activate
def test_kick_off_without_content_location() -> None:
    responses.get(f"{BASE}/$export", status=200, json={"resourceType": "Bundle"})
    with pytest.raises(FhirError, match="asynchronous"):
        BulkExport(client()).kick_off()


@responses.activate
def test_empty_export_yields_nothing() -> None:
    clock = Clock()
    responses.get(f"{BASE}/$export", status=202, headers={"Content-Location": STATUS})
    responses.get(STATUS, json=manifest(output=[]))
    responses.delete(STATUS, status=404)
    with ExportSource(BASE, client=client(), sleep=clock.sleep, clock=clock) as source:
        assert list(source.records()) == []
        assert source.report.total_skipped == 0


@responses.activate
def test_files_without_access_token_get_no_authorization_header() -> None:
    from fhir_adapter.client import BearerToken

    clock = Clock()
    body = manifest()
    body["requiresAccessToken"] = False  # e.g. pre-signed cloud storage URLs, which reject extra auth
    body["output"][0]["count"] = 1
    responses.get(f"{BASE}/$export", status=202, headers={"Content-Location": STATUS})
    responses.get(STATUS, json=body)
    responses.get(f"{FILES}/Patient.ndjson", body=b'{"resourceType":"Patient","id":"a"}\n')
    responses.delete(STATUS)
    c = FhirClient(BASE, auth=BearerToken("secret"))
    with ExportSource(BASE, client=c, sleep=clock.sleep, clock=clock, workers=1) as source:
        assert [r["id"] for r, _ in source.resources()] == ["a"]
    sent = {call.request.url.split("?")[0]: call.request.headers.get("Authorization") for call in responses.calls}
    assert sent[f"{BASE}/$export"] == "Bearer secret"
    assert sent[STATUS] == "Bearer secret"
    assert sent[f"{FILES}/Patient.ndjson"] is None


@responses.activate
def test_a_cut_manifest_file_or_error_file_is_fetched_again_never_half_read() -> None:
    clock = Clock()
    whole = b'{"resourceType":"Patient","id":"a"}\n{"resourceType":"Patient","id":"b"}\n'
    outcome = (b'{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"processing",'
               b'"diagnostics":"Observation/9 could not be exported"}]}\n')
    responses.get(f"{BASE}/$export", status=202, headers={"Content-Location": STATUS})
    responses.get(STATUS, body=b'{"transactionTime":"2026-01-01T00:00:00Z","output":[{"type":"Pat')
    responses.get(STATUS, json=manifest(error=[{"type": "OperationOutcome", "url": f"{FILES}/err.ndjson"}]))
    responses.get(f"{FILES}/Patient.ndjson", body=whole[:20])  # cut mid-line
    responses.get(f"{FILES}/Patient.ndjson", body=whole[:36])  # cut after the first line: 1 of count 2
    responses.get(f"{FILES}/Patient.ndjson", body=whole)
    responses.get(f"{FILES}/err.ndjson", body=outcome[:40])
    responses.get(f"{FILES}/err.ndjson", body=outcome)
    responses.delete(STATUS, status=202)
    c = FhirClient(BASE, retry=RetryPolicy(max_attempts=3, sleep=clock.sleep))
    with ExportSource(BASE, client=c, types=["Patient"], sleep=clock.sleep, clock=clock, workers=1) as source:
        ids = sorted(r["id"] for r, _ in source.resources())
    assert ids == ["a", "b"]
    assert source.report.skipped[EXPORT_ERROR] == 1
    assert "Observation/9 could not be exported" in source.report.example[EXPORT_ERROR]
    fetched = [call.request.url.rsplit("/", 1)[-1] for call in responses.calls if call.request.method == "GET"]
    assert fetched.count("job1") == 2 and fetched.count("Patient.ndjson") == 3 and fetched.count("err.ndjson") == 2


@responses.activate
def test_a_file_still_cut_after_the_retries_fails_the_export_naming_it() -> None:
    clock = Clock()
    responses.get(f"{BASE}/$export", status=202, headers={"Content-Location": STATUS})
    responses.get(STATUS, json=manifest())
    responses.get(f"{FILES}/Patient.ndjson", body=b'{"resourceType":"Patient","id":"a"}\n{"resourceType":"Pat')
    responses.delete(STATUS, status=202)
    with pytest.raises(SourceError) as err, ExportSource(BASE, client=client(), types=["Patient"], sleep=clock.sleep,
                                                         clock=clock, workers=1) as source:
        list(source.records())
    assert f"GET {FILES}/Patient.ndjson" in str(err.value) and "cut short" in str(err.value)
    assert source.folder is not None and not list(source.folder.glob("*.ndjson*"))  # nothing half-written is read


def test_bad_level() -> None:
    with pytest.raises(ValueError):
        BulkExport(client()).kick_off(level="Group/../x")
