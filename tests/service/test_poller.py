"""The change poller against the real FHIR server: what it finds, what it hands over, where its cursor stands.

Other tests write to the same server at the same time, so every assertion looks only at this test's
patients (ids carrying the ``tag``), and pollers start "now" (just before the test's own changes).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from fhir_adapter.client import FhirClient, SearchPage
from fhir_adapter.errors import FhirError
from fhir_adapter.identity import ADAPTER_TAG
from fhir_adapter.service.changes import WATCHED_TYPES, Cursor, parse_instant
from fhir_adapter.service.evaluate import FhirUnavailable, PatientNotFound, UpstreamError
from fhir_adapter.service.poller import ChangePoller, evaluate_patients, run_poller
from fhir_adapter.service.store import Store

TYPES = ("Patient", "Observation", "Condition")


class Seen:
    """An ``on_patients`` that records every hand-over."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.calls: list[frozenset[str]] = []

    def __call__(self, patients: frozenset[str]) -> None:
        self.calls.append(patients)

    def mine(self) -> list[str]:
        """This test's patients handed over, in order, repeats kept."""
        return sorted(p for call in self.calls for p in call if self.tag in p)

    def clear(self) -> None:
        self.calls.clear()


@pytest.fixture
def client(fhir_base: str) -> Iterator[FhirClient]:
    with FhirClient(fhir_base, strict=True) as c:
        yield c


def patient(client: FhirClient, pid: str) -> dict[str, Any]:
    return client.update({"resourceType": "Patient", "id": pid, "gender": "female"})


def observation(client: FhirClient, pid: str | None, value: float = 300.0, **extra: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "Observation", "status": "final",
                                "code": {"coding": [{"system": "http://loinc.org", "code": "2157-6"}]},
                                "valueQuantity": {"value": value, "unit": "U/L"}, **extra}
    if pid is not None:
        resource["subject"] = {"reference": f"Patient/{pid}"}
    return client.create(resource)


def started(client: FhirClient, store: Store, seen: Seen, **options: Any) -> ChangePoller:
    """A poller that has taken its starting point ("now") on the server."""
    options.setdefault("types", TYPES)
    poller = ChangePoller(client, store, seen, **options)
    report = poller.poll_once()
    assert report.started and not seen.calls
    return poller


def test_new_observation_yields_exactly_its_patient(client: FhirClient, store: Store, tag: str) -> None:
    p1, p2 = f"pol-{tag}-1", f"pol-{tag}-2"
    patient(client, p1)
    patient(client, p2)  # before the start: never handed over
    seen = Seen(tag)
    poller = started(client, store, seen)
    observation(client, p1)
    report = poller.poll_once()
    assert seen.mine() == [p1]
    assert p1 in report.patients and report.resources >= 1 and not report.started
    # nothing new: nothing handed over again
    seen.clear()
    poller.poll_once()
    assert seen.mine() == []


def test_update_yields_the_patient_again_and_once(client: FhirClient, store: Store, tag: str) -> None:
    pid = f"pol-{tag}"
    patient(client, pid)
    obs = observation(client, pid)
    seen = Seen(tag)
    poller = started(client, store, seen)
    client.update({**obs, "valueQuantity": {"value": 900.0, "unit": "U/L"}})
    poller.poll_once()
    assert seen.mine() == [pid]
    client.update({**obs, "valueQuantity": {"value": 950.0, "unit": "U/L"}})
    poller.poll_once()
    poller.poll_once()
    assert seen.mine() == [pid, pid]  # one hand-over per update, none for the repeat poll


def test_cursor_survives_a_new_poller_on_the_same_store(client: FhirClient, store: Store, tag: str) -> None:
    a, b, c = (f"pol-{tag}-{n}" for n in "abc")
    for pid in (a, b, c):
        patient(client, pid)
    seen = Seen(tag)
    first = started(client, store, seen)
    observation(client, a)
    first.poll_once()
    observation(client, b)  # written while "the service is down"
    second = ChangePoller(client, store, seen, types=TYPES)  # a restart: same store, new poller
    second.poll_once()
    observation(client, c)
    ChangePoller(client, store, seen, types=TYPES).poll_once()
    assert seen.mine() == sorted([a, b, c])  # each exactly once: nothing missed, nothing repeated
    stored = Cursor.from_json(store.get_cursor("poller"))
    assert stored is not None and stored.get("Observation").since is not None


def test_start_from_the_beginning_hands_over_existing_patients(client: FhirClient, store: Store, tag: str) -> None:
    pid = f"pol-{tag}"
    patient(client, pid)
    seen = Seen(tag)
    report = ChangePoller(client, store, seen, types=("Patient",), start="beginning").poll_once()
    assert not report.started and seen.mine() == [pid]


class HidingClient(FhirClient):
    """A server on which the resources in ``hidden`` are not visible yet (a transaction committing late:
    its lastUpdated is older than resources others already see)."""

    hidden: set[str]

    def search_pages(self, resource_type: str, params: Any = None, *, count: int | None = None
                     ) -> Iterator[SearchPage]:
        for page in super().search_pages(resource_type, params, count=count):
            entries = [e for e in page.bundle.get("entry") or () if (e.get("resource") or {}).get("id")
                       not in self.hidden]
            yield SearchPage(page.number, page.request, {**page.bundle, "entry": entries})


@pytest.mark.parametrize("overlap, found", [(300.0, True), (0.0, False)])
def test_overlap_catches_a_change_that_appears_late(fhir_base: str, store: Store, tag: str, overlap: float,
                                                   found: bool) -> None:
    late_pid, pid = f"pol-{tag}-late", f"pol-{tag}"
    with HidingClient(fhir_base, strict=True) as client:
        client.hidden = set()
        patient(client, late_pid)
        patient(client, pid)
        seen = Seen(tag)
        poller = started(client, store, seen, overlap=overlap)
        late = observation(client, late_pid)
        client.hidden = {late["id"]}
        time.sleep(0.05)  # the visible change is newer than the late one by more than the keyset slack
        observation(client, pid)
        poller.poll_once()
        assert seen.mine() == [pid]
        client.hidden = set()  # the late transaction commits
        poller.poll_once()
    # with the overlap the late change is found; without it, it is lost (the margin is what saves it)
    assert seen.mine() == (sorted([late_pid, pid]) if found else [pid])


@pytest.mark.parametrize("skew", [-86400.0, 86400.0])
def test_adapter_clock_skew_loses_nothing(client: FhirClient, store: Store, tag: str, skew: float) -> None:
    pid = f"pol-{tag}"
    patient(client, pid)
    seen = Seen(tag)
    poller = started(client, store, seen, clock=lambda: time.time() + skew)
    observation(client, pid)
    report = poller.poll_once()
    assert seen.mine() == [pid]
    assert poller.last_poll_at == pytest.approx(time.time() + skew, abs=60)  # the skewed clock was in use
    # every instant in the cursor is one the server itself wrote: a resource was last updated then
    since = report.cursor["types"]["Observation"]["since"]
    assert next(client.search("Observation", {"_lastUpdated": f"eq{since}"}, count=1), None) is not None


class FailingClient(FhirClient):
    """Fails with a server error on the ``fail_on_page``-th Observation search page it is asked for from
    then on (a fault mid-scan; keyset paging makes each page its own search)."""

    _fail_on: int | None = None
    _served = 0

    @property
    def fail_on_page(self) -> int | None:
        return self._fail_on

    @fail_on_page.setter
    def fail_on_page(self, value: int | None) -> None:
        self._fail_on, self._served = value, 0

    def search_pages(self, resource_type: str, params: Any = None, *, count: int | None = None
                     ) -> Iterator[SearchPage]:
        for page in super().search_pages(resource_type, params, count=count):
            if resource_type == "Observation":
                self._served += 1
                if self._served == self._fail_on:
                    raise FhirError("the server refused the request (Internal Server Error)",
                                    request=page.request, status=500)
            yield page


def test_fault_mid_page_leaves_the_cursor_and_loses_nothing(fhir_base: str, store: Store, tag: str) -> None:
    pids = [f"pol-{tag}-{i}" for i in range(5)]
    with FailingClient(fhir_base, strict=True) as client:
        for pid in pids:
            patient(client, pid)
        seen = Seen(tag)
        poller = started(client, store, seen, page_size=2)
        before = store.get_cursor("poller")
        for pid in pids:
            observation(client, pid)
        client.fail_on_page = 2
        with pytest.raises(FhirError):
            poller.poll_once()
        assert store.get_cursor("poller") == before and seen.calls == []
        client.fail_on_page = None
        poller.poll_once()
    assert seen.mine() == sorted(pids)


def test_crash_before_the_hand_over_completes_repeats_it(client: FhirClient, store: Store, tag: str) -> None:
    pid = f"pol-{tag}"
    patient(client, pid)
    seen = Seen(tag)
    poller = started(client, store, seen)
    before = store.get_cursor("poller")
    observation(client, pid)

    def crash(patients: frozenset[str]) -> None:
        raise RuntimeError("the service died while evaluating")

    poller.on_patients = crash
    with pytest.raises(RuntimeError):
        poller.poll_once()
    assert store.get_cursor("poller") == before
    poller.on_patients = seen
    poller.poll_once()
    assert seen.mine() == [pid]


class FailingOnOurs(FhirClient):
    """Fails with a server error on the Observation search page that brings the ``after + 1``-th resource of
    this test's patients (``tag``): other tests' resources on the shared server move no page boundary of it."""

    tag = ""
    after: int | None = None
    _ours = 0

    def search_pages(self, resource_type: str, params: Any = None, *, count: int | None = None
                     ) -> Iterator[SearchPage]:
        for page in super().search_pages(resource_type, params, count=count):
            if resource_type == "Observation" and self.after is not None:
                self._ours += sum(self.tag in str((r.get("subject") or {}).get("reference")) for r in page.resources())
                if self._ours > self.after:
                    raise FhirError("the server refused the request (Internal Server Error)",
                                    request=page.request, status=500)
            yield page


def test_batches_save_progress_and_a_failure_after_them_repeats_nothing(fhir_base: str, store: Store,
                                                                        tag: str) -> None:
    pids = [f"pol-{tag}-{i}" for i in range(6)]
    with FailingOnOurs(fhir_base, strict=True) as client:
        for pid in pids:
            patient(client, pid)
        seen = Seen(tag)
        poller = started(client, store, seen, page_size=2, batch_patients=1, types=("Observation",))
        for pid in pids:
            observation(client, pid)
        client.tag, client.after = tag, 2  # the page with this test's third Observation fails
        with pytest.raises(FhirError):
            poller.poll_once()
        # the pages before the fault were handed over and saved: the first Observation's at least (a page of two
        # cannot hold the first and the third), the second's too unless it shares the failing page
        assert seen.mine() in (pids[:1], pids[:2])
        client.after = None
        poller.poll_once()
    assert seen.mine() == sorted(pids)  # the rest, and nothing twice


def test_many_changes_in_one_transaction_page_by_keyset(client: FhirClient, store: Store, tag: str) -> None:
    pids = [f"pol-{tag}-{i:02d}" for i in range(40)]
    seen = Seen(tag)
    poller = started(client, store, seen, page_size=3, types=("Observation",))
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "ck"},
                      "subject": {"reference": f"Patient/{pid}"}},
         "request": {"method": "POST", "url": "Observation"}} for pid in pids]}
    answer = client.transaction(bundle)
    poller.poll_once()
    assert seen.mine() == pids  # every one exactly once, ties at one millisecond included
    instants = [e["response"]["lastModified"] for e in answer["entry"]]
    assert len(set(instants)) < len(instants)  # the server did give several the same instant


def test_deleted_resource_hands_over_its_patient(client: FhirClient, store: Store, tag: str) -> None:
    pid = f"pol-{tag}"
    patient(client, pid)
    obs = observation(client, pid)
    seen = Seen(tag)
    poller = started(client, store, seen, types=("Observation",))
    client.request("DELETE", f"{client.base_url}/Observation/{obs['id']}")
    report = poller.poll_once()
    assert seen.mine() == [pid] and report.deleted >= 1
    poller.poll_once()
    assert seen.mine() == [pid]


def test_own_write_back_and_patientless_resources_trigger_nothing(client: FhirClient, store: Store, tag: str,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    pid = f"pol-{tag}"
    patient(client, pid)
    seen = Seen(tag)
    poller = started(client, store, seen, types=("Observation",))
    observation(client, pid, meta={"tag": [dict(ADAPTER_TAG)]})
    orphan = observation(client, None, identifier=[{"system": "urn:test", "value": tag}])
    with caplog.at_level(logging.INFO):
        report = poller.poll_once()
    assert seen.mine() == []
    assert report.own >= 1 and report.without_patient >= 1
    assert "name no patient" in caplog.text
    assert tag not in caplog.text and orphan["id"] not in caplog.text  # counted, never named


def test_a_stored_cursor_of_another_version_starts_afresh(client: FhirClient, store: Store, tag: str) -> None:
    store.set_cursor("poller", {"version": 99, "whatever": True})
    report = ChangePoller(client, store, Seen(tag), types=TYPES).poll_once()
    assert report.started and Cursor.from_json(store.get_cursor("poller")) is not None


def test_all_watched_types_are_searched_by_last_updated(client: FhirClient, store: Store, tag: str) -> None:
    pid = f"pol-{tag}"
    patient(client, pid)
    seen = Seen(tag)
    poller = started(client, store, seen, types=WATCHED_TYPES)
    client.create({"resourceType": "AllergyIntolerance", "patient": {"reference": f"Patient/{pid}"}})
    client.create({"resourceType": "Encounter", "status": "finished", "subject": {"reference": f"Patient/{pid}"},
                   "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}})
    report = poller.poll_once()
    assert seen.mine() == [pid]
    assert report.by_type["AllergyIntolerance"] >= 1 and report.by_type["Encounter"] >= 1
    assert sorted(report.cursor["types"]) == sorted(WATCHED_TYPES)
    assert all(parse_instant(s["since"]) for s in report.cursor["types"].values())


# -- the service's loop, with a stand-in evaluator (the app's own is exercised in test_feed_restart.py) --------

class Evaluator:
    """Stands in for the service's evaluator: records calls; ``fail`` maps a patient to the error it raises."""

    def __init__(self, fail: dict[str, Exception] | None = None) -> None:
        self.calls: list[tuple[str, str]] = []
        self.fail = fail or {}

    def reevaluate(self, patient: str, origin: str) -> list[Any]:
        if patient in self.fail:
            raise self.fail[patient]
        self.calls.append((patient, origin))
        return []


def state(evaluator: Evaluator, **more: Any) -> SimpleNamespace:
    return SimpleNamespace(evaluator=evaluator, **more)


def test_evaluate_patients_reevaluates_each_patient_and_skips_a_bad_one(caplog: pytest.LogCaptureFixture) -> None:
    evaluator = Evaluator({"gone": PatientNotFound("no such Patient"), "odd": UpstreamError("HTTP 403"),
                           "bug": KeyError("odd-2")})
    with caplog.at_level(logging.WARNING):
        evaluate_patients(state(evaluator), frozenset({"p1", "gone", "odd", "bug", "p2"}))
    assert evaluator.calls == [("p1", "poller"), ("p2", "poller")]
    assert "2 patients could not be evaluated" in caplog.text and "KeyError 1, UpstreamError 1" in caplog.text
    assert "odd" not in caplog.text


def test_evaluate_patients_fails_the_poll_when_the_server_is_down_or_refuses_everyone() -> None:
    down = Evaluator({"p1": FhirError("cannot connect to the server", request="GET x")})
    with pytest.raises(FhirError):
        evaluate_patients(state(down), frozenset({"p1", "p2"}))
    with pytest.raises(FhirUnavailable):
        evaluate_patients(state(Evaluator({"p2": FhirUnavailable("HTTP 503")})), frozenset({"p1", "p2"}))
    refused = Evaluator({"p1": UpstreamError("HTTP 401"), "p2": UpstreamError("HTTP 401")})
    with pytest.raises(UpstreamError):
        evaluate_patients(state(refused), frozenset({"p1", "p2"}))


def test_run_poller_survives_failures_and_stops_on_request(fhir_base: str, store: Store, tag: str,
                                                           tmp_path: Any) -> None:
    pid = f"pol-{tag}"
    evaluator = Evaluator()
    settings = SimpleNamespace(poll_interval_seconds=0.05, database_url=f"sqlite:///{tmp_path / 'state.db'}")
    registry = CollectorRegistry()
    app_state = state(evaluator, settings=settings, store=store, metrics=SimpleNamespace(registry=registry))
    with FailingClient(fhir_base, strict=True) as client:
        patient(client, pid)
        poller = ChangePoller(client, store, lambda ps: evaluate_patients(app_state, ps), types=("Observation",),
                              page_size=1)
        poller.poll_once()  # the starting point
        client.fail_on_page = 1  # the next Observation search fails
        stop = threading.Event()
        thread = threading.Thread(target=run_poller, args=(app_state, stop), kwargs={"poller": poller})
        thread.start()
        observation(client, pid)
        time.sleep(0.3)
        assert thread.is_alive()  # it failed once (backoff 0.1 s) and went on
        deadline = time.monotonic() + 10
        while not evaluator.calls and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()
    assert [c for c in evaluator.calls if c[0] == pid] == [(pid, "poller")]
    assert registry.get_sample_value("fhir_adapter_poller_errors_total", {"kind": "fhir"}) == 1
    assert registry.get_sample_value("fhir_adapter_poller_polls_total", {"outcome": "ok"}) >= 1


def test_parse_instant_reads_offsets_and_rejects_dates() -> None:
    assert parse_instant("2026-11-22T09:40:43.034+02:00") == datetime.fromisoformat("2026-11-22T07:40:43.034+00:00")
    assert parse_instant("2026-11-22") is None and parse_instant(None) is None


def test_one_poller_per_state_file_across_worker_processes(tmp_path: Any) -> None:
    from fhir_adapter.service.poller import _poll_lock

    url = f"sqlite:///{tmp_path / 'state.db'}"
    with _poll_lock(url) as first, _poll_lock(url) as second:
        assert first.acquire() and not second.acquire()  # flock is per open file: as between two processes
        first.release()
        assert second.acquire()  # the holder went away: another worker takes over
    with _poll_lock("sqlite:///:memory:") as memory:
        assert memory.acquire()
