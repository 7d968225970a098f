"""Every request, once: identified (whose key), timed and counted (metrics), and audited.

A pure ASGI middleware (cheaper than Starlette's BaseHTTPMiddleware on the idle-poll path). The audit log gets
every request to a protected path (``/v1/...``, ``/metrics``), allowed or refused: who (the key's name,
"anonymous" or "unknown-key"), what (method and route template, never the raw path), when, which patient
(set by the endpoint as ``request.state.patient``), the status, and a detail (``request.state.audit_detail``).
The audit row is written after the response has been sent, in a worker thread.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import anyio

from fhir_adapter.service.metrics import Metrics
from fhir_adapter.service.security import Caller, KeyRing, presented_key
from fhir_adapter.service.store import Store

log = logging.getLogger("fhir_adapter.service")

PROTECTED_PREFIXES = ("/v1/", "/metrics")


def protected(path: str) -> bool:
    return path.startswith(PROTECTED_PREFIXES) or path == "/v1"


class AccessMiddleware:
    def __init__(self, app: Any, *, metrics: Metrics, store: Store, keyring: KeyRing):
        self.app = app
        self.metrics = metrics
        self.store = store
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
        status = 500

        async def send_status(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "(no route)"
            method = scope["method"]
            self.metrics.requests.labels(method, template, str(status)).inc()
            self.metrics.latency.labels(method, template).observe(time.perf_counter() - started)
            if status >= 400:
                self.metrics.errors.labels(state.get("error_kind") or f"http-{status}").inc()
            if audited:
                await self._audit(state, f"{method} {template}", status)

    async def _audit(self, state: dict[str, Any], action: str, status: int) -> None:
        caller: Caller = state["caller"]
        try:
            await anyio.to_thread.run_sync(lambda: self.store.audit(
                caller.name, action, patient=state.get("patient"), status_code=status,
                detail=state.get("audit_detail")))
        except Exception as e:  # the answer is sent; a failed audit write is logged and counted, never raised
            self.metrics.errors.labels("audit").inc()
            log.error("audit log write failed: %s", type(e).__name__)


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
