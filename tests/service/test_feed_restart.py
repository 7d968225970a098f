"""End to end through the real app and the real FHIR server: an engine polls /v1/feed with its cursor while the
change poller ingests changes written to the FHIR server, and the service restarts (a new app on the same
SQLite file) in the middle, with a change written while it is down. The engine sees every change exactly once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fhir_adapter.client import FhirClient
from fhir_adapter.service.app import create_app
from fhir_adapter.service.settings import ServiceSettings

KEY = "engine-key-0123456789abcdef"
AS_OF = date(2026, 6, 30)


class Engine:
    """An integration engine's polling loop: keeps its cursor and ETag across the service's restarts."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.cursor: str | None = None
        self.etag: str | None = None
        self.received: list[dict[str, Any]] = []  # every entry it got, in order (all patients)
        self.not_modified = 0

    def poll(self, http: TestClient) -> None:
        while True:
            headers = {"Authorization": f"Bearer {KEY}"}
            if self.etag:
                headers["If-None-Match"] = self.etag
            params = {"limit": 50, **({"since": self.cursor} if self.cursor else {})}
            answer = http.get("/v1/feed", params=params, headers=headers)
            if answer.status_code == 304:
                self.not_modified += 1
                return
            assert answer.status_code == 200, answer.text
            body = answer.json()
            self.received.extend(body["entries"])
            self.cursor, self.etag = body["next"], answer.headers["ETag"]
            if len(body["entries"]) < 50:
                return

    def mine(self) -> list[tuple[str, str]]:
        """(patient, status) of this test's entries, in feed order."""
        return [(e["patient"], e["status"]) for e in self.received if self.tag in e["patient"]]

    def wait_for(self, http: TestClient, count: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.mine()) < count and time.monotonic() < deadline:
            self.poll(http)
            time.sleep(0.05)
        assert len(self.mine()) >= count, f"the engine saw {self.mine()}, expected {count} entries"


@pytest.fixture
def settings(fhir_base: str, tmp_path: Path) -> ServiceSettings:
    return ServiceSettings(fhir_base=fhir_base, database_url=f"sqlite:///{tmp_path / 'state.db'}",
                           api_keys=[{"name": "engine", "key": KEY, "scopes": ["results:read"]}],
                           poll_interval_seconds=0.2, poll_types=["Patient", "Observation"],
                           studies=["NCT07377058"], poll_kinds=["screening"], as_of=AS_OF)


@contextmanager
def service(settings: ServiceSettings) -> Iterator[TestClient]:
    """The app with its lifespan (the poller thread) running; shut down on exit, as a restart does."""
    with TestClient(create_app(settings)) as http:
        deadline = time.monotonic() + 30
        while http.app.state.store.get_cursor("poller") is None and time.monotonic() < deadline:
            time.sleep(0.05)  # the poller takes its starting point ("now") on its first poll
        assert http.app.state.store.get_cursor("poller") is not None
        yield http


def weight(pid: str, kg: float) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final", "subject": {"reference": f"Patient/{pid}"},
            "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7", "display": "Body weight"}]},
            "effectiveDateTime": "2026-06-01", "valueQuantity": {"value": kg, "unit": "kg",
                                                                 "system": "http://unitsofmeasure.org", "code": "kg"}}


def test_engine_sees_every_change_exactly_once_across_a_restart(settings: ServiceSettings, fhir_base: str,
                                                                 tag: str) -> None:
    fhir = FhirClient(fhir_base, strict=True)
    a, b, c = (f"feed-{tag}-{n}" for n in "abc")
    engine = Engine(tag)
    changes: list[Callable[[], Any]] = [
        lambda: fhir.update({"resourceType": "Patient", "id": a, "gender": "female", "birthDate": "1980-01-01"}),
        lambda: fhir.create(weight(a, 61.0)),  # body weight: criterion I1 gets its evidence
        lambda: fhir.update({"resourceType": "Patient", "id": b, "gender": "male", "birthDate": "1975-05-05"}),
    ]
    after_restart: list[Callable[[], Any]] = [
        lambda: fhir.update({"resourceType": "Patient", "id": a, "gender": "female", "birthDate": "2015-01-01"}),
        lambda: fhir.update({"resourceType": "Patient", "id": c, "gender": "female", "birthDate": "1990-02-02"}),
    ]
    with service(settings) as http:
        for n, change in enumerate(changes, start=1):
            change()
            engine.wait_for(http, n)  # each change reaches the engine before the next is made
        seq_before = http.app.state.store.last_seq()
    # the service is down: a change is written meanwhile
    fhir.create(weight(b, 70.0))
    with service(settings) as http:  # a new app on the same SQLite file
        engine.wait_for(http, len(changes) + 1)
        for n, change in enumerate(after_restart, start=len(changes) + 2):
            change()
            engine.wait_for(http, n)
        time.sleep(1.0)  # several more polls: nothing may arrive twice
        engine.poll(http)
        assert http.app.state.store.last_seq() >= seq_before
    fhir.close()

    seqs = [e["seq"] for e in engine.received]
    assert seqs == sorted(set(seqs))  # in order, none twice (all patients)
    mine = engine.mine()
    assert [p for p, _ in mine] == [a, a, b, b, a, c]  # one entry per change, in the order made
    assert mine[4] == (a, "ineligible")  # aged 11 at screening
    assert all(e["origin"] == "poller" for e in engine.received if tag in e["patient"])
    assert engine.not_modified > 0  # idle polls were answered 304
