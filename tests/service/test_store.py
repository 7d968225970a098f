"""The service's state store on a real SQLite file."""

from __future__ import annotations

import itertools
import threading
from pathlib import Path

import pytest

from fhir_adapter.service.store import Store, content_hash


def _result(status: str = "candidate", as_of: str = "2025-01-01", **extra: object) -> dict:
    return {"patient": "Patient/p1", "study": "NCT07377058", "as_of": as_of, "status": status,
            "criteria": {"I1": {"result": "met"}}, **extra}


def test_append_dedups_on_content_and_ignores_as_of(store: Store) -> None:
    assert store.last_seq() == 0
    first = store.append_result("NCT07377058", "screening", "p1", _result(), "evaluate")
    assert first == 1
    # the same content again (a re-evaluation after a restart), and the same content on a later day
    assert store.append_result("NCT07377058", "screening", "p1", _result(), "poller") is None
    assert store.append_result("NCT07377058", "screening", "p1", _result(as_of="2025-02-01"), "poller") is None
    # a real change appends; changing back appends again (it differs from the *latest* entry)
    changed = store.append_result("NCT07377058", "screening", "p1", _result("ineligible"), "poller")
    back = store.append_result("NCT07377058", "screening", "p1", _result(), "poller")
    assert (changed, back) == (2, 3)
    # another patient, kind or study is its own series
    assert store.append_result("NCT07377058", "screening", "p2", _result(), "evaluate") == 4
    assert store.append_result("NCT04966884", "screening", "p1", _result(), "evaluate") == 5
    assert store.append_result("NCT07377058", "response", "p1", {"category": "major", "tis": 60}, "evaluate") == 6
    assert store.last_seq() == 6


def test_content_hash_is_key_order_independent() -> None:
    assert content_hash({"a": 1, "b": {"x": 1, "y": 2}}) == content_hash({"b": {"y": 2, "x": 1}, "a": 1})
    assert content_hash({"a": 1}) != content_hash({"a": 2})


def test_feed_pages_in_order_with_filters(store: Store) -> None:
    for i in range(7):
        status = "candidate" if i < 4 else "ineligible"
        store.append_result("S1" if i % 2 else "S2", "screening", f"p{i}", _result(status), "evaluate")
    store.append_result("S1", "response", "p9", {"category": "major"}, "evaluate")
    seen, since = [], 0
    while page := store.feed(since, 3):
        seen += [e.seq for e in page]
        since = page[-1].seq
    assert seen == list(range(1, 9))
    assert [e.seq for e in store.feed(0, 100, study="S1")] == [2, 4, 6, 8]
    assert [e.seq for e in store.feed(0, 100, status="ineligible")] == [5, 6, 7]
    assert [e.seq for e in store.feed(0, 100, study="S1", kind="screening", status="candidate")] == [2, 4]
    e = store.feed(7, 1)[0]
    assert (e.kind, e.status, e.patient, e.result) == ("response", "major", "p9", {"category": "major"})
    assert e.created_at.tzinfo is not None
    assert e.to_json()["created_at"].endswith("Z")
    assert store.latest_result("S1", "response", "p9").seq == 8
    assert store.latest_result("S1", "response", "nobody") is None


def test_state_survives_a_new_store_on_the_same_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    a = Store(url)
    a.create_all()
    a.append_result("S", "screening", "p1", _result(), "evaluate")
    a.set_cursor("poller", {"since": "2025-01-01T00:00:00Z", "seen": ["Observation/1"]})
    job = a.create_job({"study": "S"})
    a.close()
    b = Store(url)
    b.create_all()  # idempotent
    assert b.last_seq() == 1
    assert b.append_result("S", "screening", "p1", _result(), "evaluate") is None
    assert b.get_cursor("poller") == {"since": "2025-01-01T00:00:00Z", "seen": ["Observation/1"]}
    assert b.get_job(job).params == {"study": "S"}
    b.close()


def test_seq_is_never_reused(store: Store) -> None:
    store.append_result("S", "screening", "p1", _result(), "evaluate")
    with store.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM feed")
    assert store.append_result("S", "screening", "p1", _result(), "evaluate") == 2


def test_cursors(store: Store) -> None:
    assert store.get_cursor("poller") is None
    store.set_cursor("poller", {"a": 1})
    store.set_cursor("poller", {"a": 2})
    assert store.get_cursor("poller") == {"a": 2}


def test_jobs_lifecycle(store: Store) -> None:
    job_id = store.create_job({"source": "sample", "study": "NCT07377058"})
    job = store.get_job(job_id)
    assert (job.status, job.done, job.total, job.skipped, job.cancel_requested) == ("queued", 0, None, 0, False)
    store.update_job(job_id, status="running", total=3, started_at=job.created_at)
    store.add_job_results(job_id, [("p1", {"status": "candidate"}), ("p2", {"status": "ineligible"})])
    store.add_job_results(job_id, [("p3", {"status": "candidate"})])
    store.update_job(job_id, done=3, status="succeeded", cancel_requested=True)
    job = store.get_job(job_id)
    assert (job.status, job.done, job.total, job.cancel_requested) == ("succeeded", 3, 3, True)
    assert job.to_json()["started_at"].endswith("Z")
    assert store.job_results(job_id, 0, 2) == [{"status": "candidate"}, {"status": "ineligible"}]
    assert store.job_results(job_id, 2, 10) == [{"status": "candidate"}]
    assert store.job_result_count(job_id) == 3
    assert store.job_patients_done(job_id) == {"p1", "p2", "p3"}
    assert [j.id for j in store.list_jobs(10)] == [job_id]
    assert store.get_job("nope") is None
    with pytest.raises(ValueError, match="unknown job status"):
        store.update_job(job_id, status="exploded")
    with pytest.raises(ValueError, match="unknown job fields"):
        store.update_job(job_id, colour="red")
    with pytest.raises(KeyError):
        store.update_job("nope", done=1)
    store.delete_job(job_id)
    assert store.get_job(job_id) is None and store.job_results(job_id) == []


def test_job_transitions_claims_and_counts(store: Store) -> None:
    first, second = store.create_job({"n": 1}), store.create_job({"n": 2})
    assert store.next_queued_job().id == first  # the oldest first
    assert store.transition_job(first, ["queued"], status="running")
    assert not store.transition_job(first, ["queued"], status="running")  # claimed once only
    assert not store.transition_job("nope", ["queued"], status="running")
    assert store.next_queued_job().id == second
    assert store.transition_job(second, ["queued"], status="cancelled")
    assert store.next_queued_job() is None
    with pytest.raises(ValueError, match="unknown job status"):
        store.transition_job(first, ["running"], status="exploded")
    assert store.get_job(first).status == "running"

    store.add_job_results(first, [("p1", {"status": "candidate"}), ("p2", {"status": "ineligible"}),
                                  ("p3", {"status": "candidate"})])
    assert store.job_status_counts(first) == {"candidate": 2, "ineligible": 1}
    assert store.job_status_counts(second) == {}

    assert store.interrupt_running_jobs("stopped", idle_since=store.get_job(first).updated_at) == 0  # not idle
    assert store.interrupt_running_jobs("stopped", keep=first) == 0
    assert store.interrupt_running_jobs("stopped") == 1
    job = store.get_job(first)
    assert (job.status, job.error) == ("interrupted", "stopped") and job.finished_at is not None


def test_audit(store: Store) -> None:
    store.audit("engine", "GET /v1/feed", status_code=200)
    store.audit("anonymous", "POST /v1/evaluate", patient="p1", status_code=401, detail="no credential")
    newest, older = store.audit_entries(10)
    assert (newest.actor, newest.action, newest.patient, newest.status_code, newest.detail) == (
        "anonymous", "POST /v1/evaluate", "p1", 401, "no credential")
    assert older.at.tzinfo is not None and older.patient is None


def test_concurrent_appends_of_the_same_result_append_once(tmp_path: Path) -> None:
    """Two stores (as two uvicorn workers would) race to append the same change: exactly one entry."""
    url = f"sqlite:///{tmp_path / 'state.db'}"
    stores = [Store(url) for _ in range(2)]
    stores[0].create_all()
    got: list[int | None] = []
    barrier = threading.Barrier(8)

    errors: list[BaseException] = []

    def worker(s: Store) -> None:
        barrier.wait()
        try:
            for i in range(20):
                got.append(s.append_result("S", "screening", "p1", _result(tis=i // 2), "poller"))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(stores[i % 2],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    entries = stores[0].feed(0, 1000)
    # consecutive entries always differ (no duplicate of the latest), and each seq was handed out once
    assert all(a.result != b.result for a, b in itertools.pairwise(entries))
    assert sorted(s for s in got if s is not None) == [e.seq for e in entries]
    for s in stores:
        s.close()


def test_ping(store: Store, tmp_path: Path) -> None:
    assert store.ping()
    bad = Store(f"sqlite:///{tmp_path / 'missing-dir' / 'state.db'}")
    assert not bad.ping()


def test_in_memory_store() -> None:
    s = Store("sqlite://")
    s.create_all()
    assert s.append_result("S", "screening", "p", _result(), "evaluate") == 1
    assert s.last_seq() == 1


def test_audit_many_in_one_transaction(store: Store) -> None:
    store.audit_many([{"actor": "a", "action": "GET /v1/feed", "status_code": 200},
                      {"actor": "b", "action": "POST /v1/evaluate", "status_code": 404, "patient": "p2"}])
    store.audit_many([])
    assert [(e.actor, e.patient) for e in store.audit_entries(10)] == [("b", "p2"), ("a", None)]
