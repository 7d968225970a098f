"""The change finder's own requests (deletions from ``_history``, the version before a deletion) go through the
client's reading of answers: a 200 whose body is cut short is sent again, like a 5xx, within the retry policy."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
import responses

from fhir_adapter.client import FhirClient, RetryPolicy
from fhir_adapter.client.errors import UnreadableAnswer
from fhir_adapter.service.changes import ChangeFinder, TypeCursor
from fhir_adapter.service.evaluate import Evaluator
from fhir_adapter.service.settings import ServiceSettings

BASE = "http://ehr.test/fhir"
HISTORY = f"{BASE}/Observation/_history"
VREAD = f"{BASE}/Observation/o1/_history/1"
DELETED = {"resourceType": "Bundle", "type": "history", "entry": [
    {"request": {"method": "DELETE", "url": "Observation/o1"},
     "response": {"status": "204", "etag": 'W/"2"', "lastModified": "2026-11-22T07:40:43.034Z"}}]}
BEFORE = {"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "ferritin"},
          "subject": {"reference": "Patient/p1"}}
EMPTY = {"resourceType": "Bundle", "type": "searchset", "entry": []}


def cut(body: str) -> str:
    return body[: len(body) // 2]


@pytest.fixture
def waits() -> list[float]:
    return []


@pytest.fixture
def finder(waits: list[float]) -> ChangeFinder:
    client = FhirClient(BASE, retry=RetryPolicy(max_attempts=3, sleep=waits.append, random=lambda: 0.5))
    return ChangeFinder(client)


def scan(finder: ChangeFinder) -> list:
    state = TypeCursor("2026-11-22T07:00:00.000Z")
    return [c for batch in finder.scan("Observation", state) for c in batch.changes]


@responses.activate
def test_a_cut_history_page_and_a_cut_vread_are_each_sent_again(finder: ChangeFinder, waits: list[float]) -> None:
    responses.get(HISTORY, body=cut(orjson.dumps(DELETED).decode()), content_type="application/fhir+json")
    responses.get(HISTORY, json=DELETED)
    responses.get(VREAD, body=cut(orjson.dumps(BEFORE).decode()), content_type="application/fhir+json")
    responses.get(VREAD, json=BEFORE)
    responses.get(f"{BASE}/Observation", json=EMPTY)
    (change,) = scan(finder)
    assert (change.id, change.deleted, change.patient) == ("o1", True, "p1")  # read from the version before
    sent = [c.request.url.split("?")[0] for c in responses.calls]
    assert sent.count(HISTORY) == 2 and sent.count(VREAD) == 2  # one retry each
    assert len(waits) == 2


@responses.activate
def test_a_history_page_that_stays_cut_fails_the_scan_naming_the_request(finder: ChangeFinder) -> None:
    responses.get(HISTORY, body='{"resourceType":"Bundle","entr', content_type="application/fhir+json")
    with pytest.raises(UnreadableAnswer) as err:
        scan(finder)
    assert err.value.request.startswith(f"GET {HISTORY}?_since=") and "not valid JSON" in str(err.value)
    assert len(responses.calls) == 3  # every attempt of the policy, then the poll fails (its cursor unmoved)


@responses.activate
def test_the_readiness_probe_wants_a_capability_statement(tmp_path: Path) -> None:
    settings = ServiceSettings(fhir_base=BASE, database_url=f"sqlite:///{tmp_path / 's.db'}")
    evaluator = Evaluator(settings, store=None)  # type: ignore[arg-type]
    responses.get(f"{BASE}/metadata", body="<html>502 Bad Gateway</html>", content_type="text/html")
    assert evaluator.fhir_ready(max_age=0) is False  # a gateway's page is not the server answering
    responses.replace(responses.GET, f"{BASE}/metadata", json={"resourceType": "CapabilityStatement"})
    assert evaluator.fhir_ready(max_age=0) is True
