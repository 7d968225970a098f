"""The change poller: finds resources changed on the FHIR server and has their patients re-evaluated.

``ChangePoller.poll_once`` reads its cursor from the store, scans every watched type (``changes.py``),
hands the affected patient ids to ``on_patients`` and only then saves the new cursor: a crash in between
repeats work (the feed's content dedup makes a repeat append nothing) but never loses a change. A long
backlog is handed over in batches of ``batch_patients``, the cursor saved after each.

Where a first poll starts (no cursor yet), ``start``:

- ``"now"`` (the default): at the newest ``meta.lastUpdated`` on the server. Only what changes from then
  on is evaluated; the population as it stands is a job's work (``POST /v1/jobs``), which a hospital runs
  once, at a quiet hour, and can watch and cancel. A poller that started by re-reading years of records
  would hold up the first change a coordinator is waiting for behind all of them.
- ``"beginning"``: every resource on the server, oldest first (a small or test server).

``run_poller`` is the service's background loop (a thread): one poll every ``poll_interval_seconds``,
waiting longer after each failure (to ``MAX_BACKOFF``) and never letting an error end the service. With
several worker processes on one SQLite file, a lock file lets one of them poll at a time.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from prometheus_client import CollectorRegistry, Gauge, Histogram
from prometheus_client import Counter as MetricCounter

from fhir_adapter.client import FhirClient, ResourceNotFound
from fhir_adapter.errors import FhirError
from fhir_adapter.service.changes import WATCHED_TYPES, ChangeFinder, Cursor, TypeCursor, format_instant, parse_instant
from fhir_adapter.service.evaluate import FhirUnavailable, PatientNotFound, UpstreamError

log = logging.getLogger("fhir_adapter.service.poller")

CURSOR_NAME = "poller"
MAX_BACKOFF = 900.0  # seconds: the longest wait between polls while the FHIR server keeps failing
Start = Literal["now", "beginning"]



class PollerMetrics:
    """The poller's Prometheus metrics, in the app's registry (``app.state.metrics.registry``) when it has one."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = registry or CollectorRegistry()
        self.polls = MetricCounter("fhir_adapter_poller_polls", "change polls by outcome", ["outcome"], registry=r)
        self.changes = MetricCounter("fhir_adapter_poller_changes", "changed resources found, by type", ["type"],
                                     registry=r)
        self.patients = MetricCounter("fhir_adapter_poller_patients", "patients handed over for re-evaluation",
                                      registry=r)
        self.errors = MetricCounter("fhir_adapter_poller_errors", "poller failures by kind", ["kind"], registry=r)
        self.duration = Histogram("fhir_adapter_poller_poll_duration_seconds", "duration of one change poll",
                                  registry=r, buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300))
        self.last_success = Gauge("fhir_adapter_poller_last_success_timestamp_seconds",
                                  "when the last change poll succeeded (Unix time)", registry=r)


class CursorStore(Protocol):
    """What the poller needs of ``Store``."""

    def get_cursor(self, name: str) -> dict[str, Any] | None: ...

    def set_cursor(self, name: str, value: dict[str, Any]) -> None: ...


@dataclass
class PollReport:
    """What one poll did. ``patients`` holds ids (PHI): use ``summary()`` for logs."""

    types: list[str] = field(default_factory=list)
    resources: int = 0  # new resource versions found (deletions included)
    repeats: int = 0  # found again in the overlap margin, already processed
    deleted: int = 0
    own: int = 0  # written back by the adapter itself: never clinical input
    without_patient: int = 0
    before_start: int = 0  # last updated before the poller started "from now"
    patients: set[str] = field(default_factory=set)
    batches: int = 0  # calls of on_patients
    started: bool = False  # this poll only set the starting point
    cursor: dict[str, Any] = field(default_factory=dict)
    by_type: Counter[str] = field(default_factory=Counter)

    def summary(self) -> dict[str, Any]:
        """The counts, without patient or resource ids (fit for the application log)."""
        return {"types": len(self.types), "resources": self.resources, "repeats": self.repeats,
                "deleted": self.deleted, "own": self.own, "without_patient": self.without_patient,
                "before_start": self.before_start, "patients": len(self.patients), "batches": self.batches,
                "started": self.started}


class ChangePoller:
    """Polls ``client`` for changes of ``types`` and calls ``on_patients`` with the affected patient ids.

    ``overlap`` (seconds or a timedelta) is the margin below the cursor searched again, for clock skew and
    late commits. ``clock`` is the adapter's clock, used only to stamp the report: the cursor is made of
    the server's own instants, so a wrong local clock changes nothing.
    """

    def __init__(self, client: FhirClient, store: CursorStore, on_patients: Callable[[frozenset[str]], None],
                 types: Collection[str] = WATCHED_TYPES, overlap: float | timedelta = 300.0, *,
                 start: Start = "now", page_size: int = 200, batch_patients: int = 500, sort: bool = True,
                 deletions: bool = True, cursor_name: str = CURSOR_NAME,
                 clock: Callable[[], float] = time.time) -> None:
        if start not in ("now", "beginning"):
            raise ValueError(f"start must be 'now' or 'beginning', not {start!r}")
        self.client = client
        self.store = store
        self.on_patients = on_patients
        self.types = list(types)
        self.overlap = overlap if isinstance(overlap, timedelta) else timedelta(seconds=overlap)
        self.start = start
        self.batch_patients = batch_patients
        self.cursor_name = cursor_name
        self.clock = clock
        self.sort = sort
        self.finder = ChangeFinder(client, overlap=self.overlap, page_size=page_size, sort=sort, deletions=deletions)
        self.last_poll_at: float | None = None

    def poll_once(self) -> PollReport:
        """One poll of every type. Raises ``FhirError`` when the server fails; the cursor then stays where
        the last completed batch left it, and the next poll repeats the rest."""
        report = PollReport(types=list(self.types))
        self.last_poll_at = self.clock()
        cursor = self._load()
        if cursor is None:
            cursor = self._starting_cursor()
            report.started = self.start == "now"
            self.store.set_cursor(self.cursor_name, cursor.to_json())
            if report.started:
                report.cursor = cursor.to_json()
                return report
        floor = parse_instant(cursor.floor)
        pending: set[str] = set()
        for rtype in self.types:
            for batch in self.finder.scan(rtype, cursor.get(rtype), floor):
                cursor = cursor.with_type(rtype, batch.state)
                report.repeats += batch.repeats
                report.before_start += batch.before_floor
                for change in batch.changes:
                    report.resources += 1
                    report.by_type[rtype] += 1
                    report.deleted += change.deleted
                    if change.own:
                        report.own += 1
                    elif change.patient is None:
                        report.without_patient += 1
                    else:
                        pending.add(change.patient)
                if len(pending) >= self.batch_patients:
                    self._hand_over(pending, cursor, report)
        self._hand_over(pending, cursor, report)
        if report.without_patient:
            log.info("change poll: %d changed resources name no patient (skipped)", report.without_patient)
        report.cursor = cursor.to_json()
        return report

    def _hand_over(self, pending: set[str], cursor: Cursor, report: PollReport) -> None:
        """``on_patients(pending)``, then save ``cursor``: in that order, so a crash repeats, never loses."""
        if pending:
            self.on_patients(frozenset(pending))
            report.patients |= pending
            report.batches += 1
            pending.clear()
        if self.store.get_cursor(self.cursor_name) != (saved := cursor.to_json()):
            self.store.set_cursor(self.cursor_name, saved)

    def _load(self) -> Cursor | None:
        raw = self.store.get_cursor(self.cursor_name)
        cursor = Cursor.from_json(raw)
        if raw is not None and cursor is None:
            log.warning("the stored poller cursor is not one this version reads; starting afresh (%s)", self.start)
        return cursor

    def _starting_cursor(self) -> Cursor:
        if self.start == "beginning":
            return Cursor()
        now = format_instant(self.server_now())
        log.info("change poller starts from the server's newest change, %s", now)
        return Cursor({t: TypeCursor(now) for t in self.types}, floor=now)

    def server_now(self) -> datetime:
        """The server's "now" by its own clock: the newest ``meta.lastUpdated`` of the watched types (or the
        ``Date`` header of its answer when it holds none of them)."""
        newest: datetime | None = None
        if self.sort:
            for rtype in self.types:
                page = next(self.client.search_pages(rtype, [("_sort", "-_lastUpdated"), ("_elements", "id")],
                                                     count=1), None)
                for resource in page.resources() if page else ():
                    meta = resource.get("meta") if isinstance(resource.get("meta"), dict) else {}
                    at = parse_instant(meta.get("lastUpdated"))
                    if at is not None and (newest is None or at > newest):
                        newest = at
        if newest is None:
            response = self.client.request("GET", f"{self.client.base_url}/metadata")
            try:
                newest = parsedate_to_datetime(response.headers.get("Date", ""))
            except (TypeError, ValueError):
                raise FhirError("cannot tell the server's time: no resources and no Date header",
                                request=f"GET {self.client.base_url}/metadata") from None
        return newest


# -- the service's background loop ---------------------------------------------------------------------------

def evaluate_patients(app_state: Any, patients: frozenset[str], metrics: PollerMetrics | None = None) -> None:
    """Re-evaluate ``patients`` for every configured study and kind (``evaluator.reevaluate``: one record read
    for all of them), appending to the feed (origin "poller").

    A patient gone from the server, or one whose evaluation fails, is skipped (counted in the log, never named),
    so one bad record never holds the poller back. An unreachable FHIR server raises, and so does a batch in
    which every patient was refused (the adapter's credentials, most likely): the poll fails and is repeated,
    the cursor unmoved.
    """
    failed: Counter[str] = Counter()
    refused: UpstreamError | None = None
    for patient in sorted(patients):
        try:
            app_state.evaluator.reevaluate(patient, "poller")
        except Exception as exc:  # classified: unavailability aborts the poll, a bad patient is skipped
            if _unavailable(exc):
                raise
            if isinstance(exc, PatientNotFound | ResourceNotFound):
                continue  # deleted: nothing to evaluate (its feed entries stand)
            if isinstance(exc, UpstreamError):
                refused = refused or exc
            failed[type(exc).__name__] += 1
            if metrics is not None:
                metrics.errors.labels(kind="evaluation").inc()
    if refused is not None and failed[type(refused).__name__] == len(patients):
        raise refused
    if failed:
        log.warning("change poll: %d patients could not be evaluated and were skipped (%s)",
                    sum(failed.values()), ", ".join(f"{k} {v}" for k, v in sorted(failed.items())))


def _unavailable(exc: BaseException) -> bool:
    """True for "the FHIR server cannot be reached now" (repeat the whole poll later), not "this patient"."""
    if isinstance(exc, FhirUnavailable):
        return True
    status = getattr(exc, "status", None)
    return isinstance(exc, FhirError) and (status is None or status >= 500 or status in (401, 403, 408, 429))


def build_poller(app_state: Any, client: FhirClient | None = None, metrics: PollerMetrics | None = None
                 ) -> ChangePoller:
    """The service's poller from ``app_state`` (settings, store, evaluator with its FHIR ``client``)."""
    settings = app_state.settings
    client = client or getattr(app_state.evaluator, "client", None)
    if client is None:
        raise ValueError("the change poller needs a FHIR client (no fhir_base configured)")
    return ChangePoller(client, app_state.store, lambda patients: evaluate_patients(app_state, patients, metrics),
                        settings.poll_types, settings.poll_overlap_seconds, start=settings.poll_start,
                        sort=settings.poll_sort)


def run_poller(app_state: Any, stop_event: threading.Event, *, poller: ChangePoller | None = None) -> None:
    """Poll until ``stop_event`` is set (the app's lifespan ends): the body of the poller thread.

    Never raises: a failing poll is logged without PHI and counted, and the next one waits twice as long
    (up to ``MAX_BACKOFF``). With a SQLite state file, only the worker process holding its lock polls.
    """
    settings = app_state.settings
    interval = float(settings.poll_interval_seconds)
    if interval <= 0:
        return
    metrics = getattr(app_state, "poller_metrics", None)
    if metrics is None:  # once per app: its registry refuses the same metric twice (a second lifespan)
        registry = getattr(getattr(app_state, "metrics", None), "registry", None)
        metrics = app_state.poller_metrics = PollerMetrics(registry if isinstance(registry, CollectorRegistry)
                                                           else None)
    wait, failures = 0.0, 0
    with _poll_lock(settings.database_url) as lock:
        while not stop_event.wait(wait):
            try:
                if not lock.acquire():
                    wait = interval  # another worker process polls
                    continue
                poller = poller or build_poller(app_state, metrics=metrics)
                started = time.perf_counter()
                report = poller.poll_once()
            except Exception as exc:  # the loop must outlive any failure
                failures += 1
                kind = "fhir" if isinstance(exc, FhirError) else type(exc).__name__
                metrics.errors.labels(kind=kind).inc()
                metrics.polls.labels(outcome="failed").inc()
                wait = min(interval * 2 ** min(failures, 10), max(MAX_BACKOFF, interval))
                log.warning("change poll failed (%s: %s); next try in %.0f s", type(exc).__name__,
                            _safe_message(exc), wait)
                continue
            failures, wait = 0, interval
            metrics.duration.observe(time.perf_counter() - started)
            metrics.polls.labels(outcome="ok").inc()
            metrics.patients.inc(len(report.patients))
            for rtype, n in report.by_type.items():
                metrics.changes.labels(type=rtype).inc(n)
            metrics.last_success.set_to_current_time()
            if report.resources or report.started:
                log.info("change poll: %s", report.summary())


def _safe_message(exc: BaseException) -> str:
    """An error for the log without PHI: a request URL may name a patient, so only the HTTP status and the
    first words of a FhirError's own message (before "; request:") are kept."""
    if isinstance(exc, FhirError):
        head = str(exc).split("; request:")[0][:200]
        return f"{head} (HTTP {exc.status})" if exc.status else head
    return "see the metrics"


class _Lock:
    """An exclusive, non-blocking lock on a file (one poller per state database); held until closed."""

    def __init__(self, path: Path | None):
        self.path = path
        self.file: Any = None

    def acquire(self) -> bool:
        if self.path is None or self.file is not None:
            return True
        f = self.path.open("a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            return False
        self.file = f
        return True

    def release(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


@contextlib.contextmanager
def _poll_lock(database_url: str) -> Iterator[_Lock]:
    """The poller lock beside a SQLite file (``sqlite:///state.db`` -> ``state.db.poller.lock``); none for
    an in-memory database or another database (run a single poller there)."""
    path = None
    if database_url.startswith("sqlite:///") and ":memory:" not in database_url:
        path = Path(database_url.removeprefix("sqlite:///").split("?")[0] + ".poller.lock")
    lock = _Lock(path)
    try:
        yield lock
    finally:
        lock.release()
