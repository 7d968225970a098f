"""Every request, once: identified (whose key), timed and counted (metrics), audited, and kept from a bug's
traceback (an exception no handler took ends here: ``errors.answer_bug``).

A pure ASGI middleware (cheaper than Starlette's BaseHTTPMiddleware on the idle-poll path). The audit log gets
every request to a protected path (``/v1/...``, ``/metrics``), allowed or refused: who (the key's name,
"anonymous" or "unknown-key"), what (method and route template, never the raw path), when, which patient
(set by the endpoint as ``request.state.patient``), the status, and a detail (``request.state.audit_detail``).
Audit rows are written by one background thread (``AuditWriter``), in batches, so that no request waits for
a database write (an idle feed poll stays cheap even while jobs and the poller write); the app's shutdown
flushes it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

from fhir_adapter.service.errors import answer_bug
from fhir_adapter.service.metrics import Metrics
from fhir_adapter.service.security import Caller, KeyRing, presented_key
from fhir_adapter.service.store import Store, utcnow

log = logging.getLogger("fhir_adapter.service")

PROTECTED_PREFIXES = ("/v1/", "/metrics")


def protected(path: str) -> bool:
    return path.startswith(PROTECTED_PREFIXES) or path == "/v1"


class AccessMiddleware:
    def __init__(self, app: Any, *, metrics: Metrics, audit: AuditWriter, keyring: KeyRing):
        self.app = app
        self.metrics = metrics
        self.audit = audit
        self.keyring = keyring

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        state = scope.setdefault("state", {})
        audited = protected(scope["path"])
        if audited:
            key = presented_key(_Headers(scope["headers"]))
            state["caller"] = Caller(self.keyring.identify(key) if key else None, key is not None)
        status, started = 500, False

        async def send_status(message: dict[str, Any]) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        except Exception as exc:  # a bug: a 500 OperationOutcome, one line in the log, nothing raised on
            status = 500
            await answer_bug(scope, receive, send, exc, started=started)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "(no route)"
            method = scope["method"]
            self.metrics.requests.labels(method, template, str(status)).inc()
            self.metrics.latency.labels(method, template).observe(time.perf_counter() - started)
            if status >= 400:
                self.metrics.errors.labels(state.get("error_kind") or f"http-{status}").inc()
            if audited:
                self.audit.submit({"at": utcnow(), "actor": state["caller"].name, "action": f"{method} {template}",
                                   "patient": state.get("patient"), "status_code": status,
                                   "detail": state.get("audit_detail")})


class AuditWriter:
    """Writes audit rows in the background, in order, as many per transaction as are waiting."""

    def __init__(self, store: Store, metrics: Metrics, batch: int = 500):
        self.store = store
        self.metrics = metrics
        self.batch = batch
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, row: dict[str, Any]) -> None:
        self._start()
        self._queue.put(row)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every row submitted so far is written; False on timeout."""
        done = threading.Event()
        self._start()
        self._queue.put(done)
        return done.wait(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Flush and stop the thread (the app's shutdown)."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None

    def _start(self) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="fhir-adapter-audit", daemon=True)
                    self._thread.start()

    def _run(self) -> None:
        while True:
            items = [self._queue.get()]
            while len(items) < self.batch:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            rows = [i for i in items if isinstance(i, dict)]
            try:
                self.store.audit_many(rows)
            except Exception as e:  # never lose the thread; the failure is logged (no PHI) and counted
                self.metrics.errors.labels("audit").inc(len(rows))
                log.error("audit log write failed (%d entries): %s", len(rows), type(e).__name__)
            for i in items:
                if isinstance(i, threading.Event):
                    i.set()
            if any(i is None for i in items):
                return


class _Headers:
    """Case-insensitive ``get`` over ASGI headers (names arrive lower case)."""

    def __init__(self, raw: list[tuple[bytes, bytes]]):
        self.raw = raw

    def get(self, name: str) -> str | None:
        wanted = name.encode()
        for k, v in self.raw:
            if k == wanted:
                return v.decode("latin-1")
        return None
