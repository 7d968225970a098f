"""Faults a real server does not produce on demand, played by ``responses``: throttling, outages, timeouts,
broken bodies, looping pages, and the rule that a plain POST is never repeated blindly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
import requests
import responses
from urllib3.exceptions import MaxRetryError, NewConnectionError

from fhir_adapter.client import FhirClient, PreconditionFailed, ResourceNotFound, RetryPolicy
from fhir_adapter.client.errors import AuthError, UnreadableAnswer
from fhir_adapter.errors import FhirError

BASE = "http://ehr.test/fhir"
PATIENT = {"resourceType": "Patient", "id": "1"}
OUTCOME = {"resourceType": "OperationOutcome",
           "issue": [{"severity": "error", "code": "invalid", "diagnostics": "Unknown element 'foo'",
                      "details": {"text": "Patient.foo is not allowed"}}]}


@pytest.fixture
def waits() -> list[float]:
    return []


@pytest.fixture
def client(waits: list[float]) -> FhirClient:
    return FhirClient(BASE, retry=RetryPolicy(max_attempts=4, base_delay=1.0, max_delay=20.0,
                                              sleep=waits.append, random=lambda: 0.5))


def bundle(*ids: str, next_url: str | None = None, outcome: str | None = None) -> dict:
    entries = [{"resource": {"resourceType": "Patient", "id": i}, "search": {"mode": "match"}} for i in ids]
    if outcome:
        entries.append({"resource": {"resourceType": "OperationOutcome",
                                     "issue": [{"severity": "warning", "code": "not-supported",
                                                "diagnostics": outcome}]},
                        "search": {"mode": "outcome"}})
    links = [{"relation": "self", "url": "x"}] + ([{"relation": "next", "url": next_url}] if next_url else [])
    return {"resourceType": "Bundle", "type": "searchset", "link": links, "entry": entries}


@responses.activate
def test_429_honours_retry_after_seconds(client: FhirClient, waits: list[float]) -> None:
    responses.get(f"{BASE}/Patient/1", status=429, headers={"Retry-After": "7"})
    responses.get(f"{BASE}/Patient/1", json=PATIENT)
    assert client.read("Patient", "1") == PATIENT
    assert waits == [7.0]


@responses.activate
def test_retry_after_http_date_and_cap(client: FhirClient, waits: list[float]) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=12), usegmt=True)
    responses.get(f"{BASE}/Patient/1", status=503, headers={"Retry-After": when})
    responses.get(f"{BASE}/Patient/1", status=429, headers={"Retry-After": "3600"})
    responses.get(f"{BASE}/Patient/1", json=PATIENT)
    client.read("Patient", "1")
    assert 10.0 <= waits[0] <= 12.0
    assert waits[1] == 20.0  # capped by max_delay


@responses.activate
def test_503_then_success_uses_backoff(client: FhirClient, waits: list[float]) -> None:
    responses.get(f"{BASE}/Patient/1", status=503)
    responses.get(f"{BASE}/Patient/1", status=502)
    responses.get(f"{BASE}/Patient/1", json=PATIENT)
    assert client.read("Patient", "1")["id"] == "1"
    assert waits == [0.5, 1.0]  # random 0.5 x min(max, 1 * 2**n): full jitter, doubling


@responses.activate
def test_gives_up_after_max_attempts(client: FhirClient, waits: list[float]) -> None:
    responses.get(f"{BASE}/Patient/1", status=500, json=OUTCOME)
    with pytest.raises(FhirError) as err:
        client.read("Patient", "1")
    assert len(responses.calls) == 4 and len(waits) == 3
    assert err.value.status == 500 and "Unknown element 'foo'" in err.value.outcome


@pytest.mark.parametrize("exc", [requests.exceptions.ConnectTimeout("connect timed out"),
                                 requests.exceptions.ReadTimeout("read timed out")])
@responses.activate
def test_timeouts_are_retried_on_get(client: FhirClient, waits: list[float], exc: Exception) -> None:
    responses.get(f"{BASE}/Patient/1", body=exc)
    responses.get(f"{BASE}/Patient/1", json=PATIENT)
    assert client.read("Patient", "1") == PATIENT
    assert len(waits) == 1


@responses.activate
def test_timeout_every_time_raises_fhir_error(client: FhirClient) -> None:
    responses.get(f"{BASE}/Patient/1", body=requests.exceptions.ReadTimeout("read timed out"))
    with pytest.raises(FhirError) as err:
        client.read("Patient", "1")
    assert err.value.status is None and "timed out" in str(err.value)
    assert err.value.request == f"GET {BASE}/Patient/1"


def test_every_request_has_a_timeout(waits: list[float]) -> None:
    seen = []

    class Recorder(requests.Session):
        def request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            seen.append(kwargs.get("timeout"))
            raise requests.exceptions.ConnectTimeout("no")

    client = FhirClient(BASE, timeout=(2, 9), session=Recorder(), retry=RetryPolicy(2, sleep=waits.append))
    with pytest.raises(FhirError):
        client.read("Patient", "1")
    with pytest.raises(FhirError):
        client.create({"resourceType": "Patient"})
    assert seen == [(2, 9)] * 4


@pytest.mark.parametrize("body", [b'{"resourceType": "Patient", "id": "1"', b"<html>Bad gateway</html>", b""])
@responses.activate
def test_truncated_or_malformed_json_is_retried_then_named(client: FhirClient, waits: list[float],
                                                           body: bytes) -> None:
    responses.get(f"{BASE}/Patient/1", body=body, content_type="application/fhir+json")
    with pytest.raises(UnreadableAnswer) as err:
        client.read("Patient", "1")
    assert "not valid JSON" in str(err.value) and err.value.status == 200
    assert len(responses.calls) == 4 and len(waits) == 3  # every attempt of the policy, then the error


@responses.activate
def test_a_truncated_200_then_a_good_answer_is_one_retry(client: FhirClient, waits: list[float]) -> None:
    responses.get(f"{BASE}/Patient/1", body=b'{"resourceType":"Patient","id":"1","name":[{"fam',
                  content_type="application/fhir+json")
    responses.get(f"{BASE}/Patient/1", json=PATIENT)
    assert client.read("Patient", "1") == PATIENT
    assert len(responses.calls) == 2 and waits == [0.5]  # the backoff of a 5xx


@pytest.mark.parametrize("answer", [
    {"body": b"<html><h1>502 Bad Gateway</h1></html>", "content_type": "text/html"},
    {"json": {"type": "searchset", "entry": []}},  # a Bundle without resourceType
    {"json": OUTCOME},  # not the Bundle a search answers with
    {"body": b'{"resourceType":"Bundle","type":"searchset"', "auto_calculate_content_length": False,
     "headers": {"Content-Length": "500"}},  # shorter than its Content-Length
])
@responses.activate
def test_an_unreadable_search_answer_is_retried(client: FhirClient, waits: list[float], answer: dict) -> None:
    responses.get(f"{BASE}/Patient", **answer)
    responses.get(f"{BASE}/Patient", json=bundle("a"))
    assert [p["id"] for p in client.search("Patient")] == ["a"]
    assert len(responses.calls) == 2 and len(waits) == 1


@responses.activate
def test_a_failing_page_is_fetched_again_never_the_search_from_its_start(client: FhirClient,
                                                                        waits: list[float]) -> None:
    responses.get(f"{BASE}/Patient", json=bundle("a", next_url=f"{BASE}/Patient?page=2"))
    responses.get(f"{BASE}/Patient?page=2", body=b'{"resourceType":"Bundle","entry":[{"resou')
    responses.get(f"{BASE}/Patient?page=2", status=503, headers={"Retry-After": "1"})
    responses.get(f"{BASE}/Patient?page=2", json=bundle("b", next_url=f"{BASE}/Patient?page=3"))
    responses.get(f"{BASE}/Patient?page=3", json=bundle("c"))
    assert [p["id"] for p in client.search("Patient")] == ["a", "b", "c"]  # none twice, none missing
    assert [c.request.url.removeprefix(BASE) for c in responses.calls] == [
        "/Patient", "/Patient?page=2", "/Patient?page=2", "/Patient?page=2", "/Patient?page=3"]
    assert waits == [0.5, 1.0]  # the backoff, then the server's Retry-After


@responses.activate
def test_a_body_garbled_in_transit_is_retried_on_get_only(client: FhirClient, waits: list[float]) -> None:
    garbled = requests.exceptions.ContentDecodingError("Received response with content-encoding: gzip, but failed "
                                                       "to decode it.")
    responses.get(f"{BASE}/Patient/1", body=garbled)
    responses.get(f"{BASE}/Patient/1", json=PATIENT)
    assert client.read("Patient", "1") == PATIENT
    responses.post(f"{BASE}/Patient", body=garbled)
    with pytest.raises(FhirError, match="not sent again"):
        client.create({"resourceType": "Patient"})
    assert [c.request.method for c in responses.calls] == ["GET", "GET", "POST"]


@responses.activate
def test_a_read_answered_with_another_resource_type_is_retried(client: FhirClient, waits: list[float]) -> None:
    responses.get(f"{BASE}/Patient/1", json=OUTCOME)
    responses.get(f"{BASE}/Patient/1", json=PATIENT)
    assert client.read("Patient", "1") == PATIENT
    assert len(waits) == 1


@responses.activate
def test_an_update_with_a_cut_answer_is_retried(client: FhirClient, waits: list[float]) -> None:
    responses.put(f"{BASE}/Patient/1", body=b'{"resourceType":"Pat')
    responses.put(f"{BASE}/Patient/1", json=PATIENT)
    assert client.update(PATIENT) == PATIENT  # PUT is idempotent: sending it again stores it once
    assert len(responses.calls) == 2


@responses.activate
def test_a_post_transaction_with_a_cut_answer_is_not_sent_again(client: FhirClient, waits: list[float]) -> None:
    responses.post(BASE, body=b'{"resourceType":"Bundle","type":"transaction-response","entry":[{"resp')
    with pytest.raises(UnreadableAnswer) as err:
        client.transaction({"resourceType": "Bundle", "type": "transaction", "entry": []})
    assert len(responses.calls) == 1 and waits == []
    message = str(err.value)
    assert "not valid JSON" in message and f"POST {BASE}" in message and "HTTP 200" in message
    assert "may have acted on it, so it was not sent again" in message


@responses.activate
def test_a_post_whose_answer_breaks_off_is_not_sent_again(client: FhirClient, waits: list[float]) -> None:
    responses.post(f"{BASE}/Patient", body=requests.exceptions.ChunkedEncodingError("connection broken"))
    with pytest.raises(FhirError) as err:
        client.create({"resourceType": "Patient"})
    assert len(responses.calls) == 1 and waits == []
    assert "truncated" in str(err.value) and "not sent again" in str(err.value)


@responses.activate
def test_a_conditional_create_with_a_cut_answer_is_retried(client: FhirClient, waits: list[float]) -> None:
    responses.post(f"{BASE}/Patient", status=201, body=b"<html>proxy error</html>", content_type="text/html")
    responses.post(f"{BASE}/Patient", status=200, json=PATIENT)  # the repeat finds the first attempt's resource
    assert client.create_if_none_exist({"resourceType": "Patient"}, {"identifier": "s|v"}) == (PATIENT, False)
    assert len(responses.calls) == 2


@responses.activate
def test_400_is_not_retried_and_carries_the_outcome(client: FhirClient, waits: list[float]) -> None:
    responses.post(f"{BASE}/Patient", status=400, json=OUTCOME)
    with pytest.raises(FhirError) as err:
        client.create({"resourceType": "Patient", "foo": 1})
    assert len(responses.calls) == 1 and waits == []
    assert err.value.status == 400
    assert err.value.outcome == "Unknown element 'foo'; Patient.foo is not allowed"
    assert "server said: Unknown element 'foo'" in str(err.value)


@pytest.mark.parametrize(("status", "cls"), [(404, ResourceNotFound), (410, ResourceNotFound),
                                             (412, PreconditionFailed), (401, AuthError), (403, AuthError),
                                             (422, FhirError)])
@responses.activate
def test_error_classes(client: FhirClient, status: int, cls: type, waits: list[float]) -> None:
    responses.get(f"{BASE}/Patient/1", status=status, json=OUTCOME)
    with pytest.raises(cls) as err:
        client.read("Patient", "1")
    assert err.value.status == status and len(responses.calls) == 1


@pytest.mark.parametrize("status", [500, 502, 504])
@responses.activate
def test_plain_post_is_not_retried_blindly(client: FhirClient, waits: list[float], status: int) -> None:
    responses.post(f"{BASE}/Patient", status=status)
    with pytest.raises(FhirError):
        client.create({"resourceType": "Patient"})
    assert len(responses.calls) == 1 and waits == []


@responses.activate
def test_post_read_timeout_is_not_retried(client: FhirClient, waits: list[float]) -> None:
    responses.post(BASE, body=requests.exceptions.ReadTimeout("read timed out"))
    with pytest.raises(FhirError, match="timed out"):
        client.transaction({"resourceType": "Bundle", "type": "transaction", "entry": []})
    assert len(responses.calls) == 1 and waits == []


@responses.activate
def test_post_is_retried_when_it_never_reached_the_server(client: FhirClient, waits: list[float]) -> None:
    refused = requests.exceptions.ConnectionError(
        MaxRetryError(None, f"{BASE}/Patient", NewConnectionError(None, "Connection refused")))  # type: ignore[arg-type]
    responses.post(f"{BASE}/Patient", body=refused)
    responses.post(f"{BASE}/Patient", status=201, json=PATIENT)
    assert client.create({"resourceType": "Patient"}) == PATIENT
    assert len(waits) == 1


@responses.activate
def test_post_is_retried_on_429_and_on_503_with_retry_after(client: FhirClient, waits: list[float]) -> None:
    responses.post(BASE, status=429)
    responses.post(BASE, status=503, headers={"Retry-After": "2"})
    responses.post(BASE, json={"resourceType": "Bundle", "type": "batch-response", "entry": []})
    client.batch({"resourceType": "Bundle", "type": "batch", "entry": []})
    assert waits == [0.5, 2.0]


@responses.activate
def test_conditional_create_is_retried(client: FhirClient, waits: list[float]) -> None:
    responses.post(f"{BASE}/Patient", status=502)
    responses.post(f"{BASE}/Patient", status=200, json=PATIENT)
    resource, created = client.create_if_none_exist({"resourceType": "Patient"}, {"identifier": "s|v"})
    assert resource == PATIENT and not created
    assert responses.calls[1].request.headers["If-None-Exist"] == "identifier=s|v"


@responses.activate
def test_return_minimal_write_reads_the_location(client: FhirClient) -> None:
    # Epic and Cerner often answer a create with an empty body and only a Location header.
    responses.post(f"{BASE}/Patient", status=201, headers={"Location": f"{BASE}/Patient/1/_history/1"})
    responses.get(f"{BASE}/Patient/1", json=PATIENT)
    assert client.create({"resourceType": "Patient"}) == PATIENT


@responses.activate
def test_looping_next_link_is_detected(client: FhirClient) -> None:
    responses.get(f"{BASE}/Patient", json=bundle("a", next_url=f"{BASE}/Patient?page=2"))
    responses.get(f"{BASE}/Patient?page=2", json=bundle("b", next_url=f"{BASE}/Patient?page=3"))
    responses.get(f"{BASE}/Patient?page=3", json=bundle("c", next_url=f"{BASE}/Patient?page=2"))
    seen = []
    with pytest.raises(FhirError) as err:
        seen.extend(r["id"] for r in client.search("Patient"))
    assert seen == ["a", "b", "c"]
    assert f"{BASE}/Patient?page=2" in str(err.value)
    assert "loops" in str(err.value)


@responses.activate
def test_next_link_to_another_host_is_refused(client: FhirClient) -> None:
    responses.get(f"{BASE}/Patient", json=bundle("a", next_url="http://elsewhere.test/fhir/Patient?page=2"))
    with pytest.raises(FhirError, match=r"leaves the server: http://elsewhere\.test"):
        list(client.search("Patient"))
    assert len(responses.calls) == 1


@responses.activate
def test_relative_next_link_and_outcome_entries(client: FhirClient, caplog: pytest.LogCaptureFixture) -> None:
    responses.get(f"{BASE}/Observation", json=bundle("a", next_url="Observation?page=2", outcome="odd param"))
    responses.get(f"{BASE}/Observation?page=2", json=bundle("b"))
    with caplog.at_level("WARNING", logger="fhir_adapter.client"):
        ids = [r["id"] for r in client.search("Observation", {"code": "x|y"}, count=5)]
    assert ids == ["a", "b"]  # the OperationOutcome entry is not a result
    assert "the server said: odd param" in caplog.text
    assert responses.calls[0].request.url.endswith("code=x%7Cy&_count=5")


@responses.activate
def test_search_answer_must_be_a_bundle(client: FhirClient) -> None:
    responses.get(f"{BASE}/Patient", json=OUTCOME)
    with pytest.raises(FhirError, match="other than a Bundle"):
        list(client.search("Patient"))


@responses.activate
def test_strict_flag_sends_prefer_header(waits: list[float]) -> None:
    responses.get(f"{BASE}/Patient", json=bundle())
    list(FhirClient(BASE, strict=True).search("Patient"))
    list(FhirClient(BASE).search("Patient"))
    assert responses.calls[0].request.headers["Prefer"] == "handling=strict"
    assert "Prefer" not in responses.calls[1].request.headers


@responses.activate
def test_download_streams_to_disk_and_retries_a_cut_body(client: FhirClient, tmp_path, waits) -> None:  # type: ignore[no-untyped-def]
    url = "http://files.test/1.ndjson"
    responses.get(url, body=requests.exceptions.ChunkedEncodingError("connection broken"))
    responses.get(url, body=b'{"resourceType":"Patient","id":"1"}\n')
    dest = tmp_path / "Patient.001.ndjson"
    assert client.download(url, dest, use_auth=False) == 36
    assert dest.read_bytes().startswith(b'{"resourceType"')
    assert not (tmp_path / "Patient.001.ndjson.part").exists()


NDJSON = b'{"resourceType":"Patient","id":"1"}\n{"resourceType":"Patient","id":"2"}\n'


@pytest.mark.parametrize(("cut", "count"), [
    (NDJSON[:50], None),  # the last line cut mid-way, the connection closed cleanly
    (NDJSON[:36], 2),  # cut right after a newline: fewer lines than the manifest's count
])
@responses.activate
def test_a_download_cut_short_is_fetched_again(client: FhirClient, tmp_path, waits, cut, count) -> None:  # type: ignore[no-untyped-def]
    url = "http://files.test/1.ndjson"
    responses.get(url, body=cut)
    responses.get(url, body=NDJSON)
    dest = tmp_path / "Patient.001.ndjson"
    assert client.download(url, dest, use_auth=False, count=count) == len(NDJSON)
    assert dest.read_bytes() == NDJSON and len(responses.calls) == 2


@responses.activate
def test_a_download_still_cut_after_the_retries_is_named_and_not_kept(client: FhirClient, tmp_path, waits) -> None:  # type: ignore[no-untyped-def]
    url = "http://files.test/1.ndjson"
    responses.get(url, body=NDJSON[:50])
    dest = tmp_path / "Patient.001.ndjson"
    with pytest.raises(UnreadableAnswer) as err:
        client.download(url, dest, use_auth=False)
    assert f"GET {url}" in str(err.value) and "cut short" in str(err.value)
    assert len(responses.calls) == 4
    assert list(tmp_path.iterdir()) == []  # neither the file nor its .part


@responses.activate
def test_a_whole_download_without_a_final_newline_is_kept(client: FhirClient, tmp_path, waits) -> None:  # type: ignore[no-untyped-def]
    url = "http://files.test/1.ndjson"
    responses.get(url, body=NDJSON.rstrip(b"\n"))
    dest = tmp_path / "Patient.001.ndjson"
    client.download(url, dest, use_auth=False, count=2)
    assert dest.read_bytes() == NDJSON.rstrip(b"\n") and len(responses.calls) == 1
