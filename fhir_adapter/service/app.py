"""``create_app(settings)``: the FastAPI application of ``fhir-adapter serve``.

Routes: ``/v1/evaluate``, ``/v1/feed`` (``api.py``), ``/v1/jobs...`` (``jobs_api.py``),
``/health/live``, ``/health/ready``, ``/metrics``; the OpenAPI schema at ``/openapi.json``. State lives in
``app.state``: ``settings``, ``store``, ``evaluator``, ``metrics``, ``keyring``, ``audit`` (its writer). The
lifespan starts the change poller thread (``poller.run_poller``) when ``poll_interval_seconds`` > 0 and a FHIR
server is configured, and enters ``jobs_api.lifespan`` (the job runner).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request, Response

from fhir_adapter import __version__
from fhir_adapter.service import api, errors, jobs_api, openapi, poller
from fhir_adapter.service.access import AccessMiddleware, AuditWriter
from fhir_adapter.service.cds_hooks import routes as cds_hooks
from fhir_adapter.service.errors import JSONResponse, documented, issue, outcome
from fhir_adapter.service.evaluate import Evaluator
from fhir_adapter.service.metrics import CONTENT_TYPE, Metrics
from fhir_adapter.service.schemas import Live, Ready
from fhir_adapter.service.security import KeyRing, Principal, authenticate, require
from fhir_adapter.service.settings import ServiceSettings
from fhir_adapter.service.store import Store

log = logging.getLogger("fhir_adapter.service")


def create_app(settings: ServiceSettings, store: Store | None = None) -> FastAPI:
    """The application. ``store`` defaults to one on ``settings.database_url`` (tables created)."""
    if store is None:
        store = Store(settings.database_url)
    store.create_all()
    metrics = Metrics()
    keyring = KeyRing(settings.api_keys)
    audit = AuditWriter(store, metrics)
    if not len(keyring):
        log.warning("no API key is configured: every request but /health is refused (401)")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(jobs_api.lifespan(app))
            stop = _start_poller(app, settings)
            try:
                yield
            finally:
                if stop is not None:
                    stop.set()
                    await asyncio.to_thread(lambda: app.state.poller_thread.join(timeout=30))
                app.state.evaluator.close()
                await asyncio.to_thread(audit.close)

    app = FastAPI(
        title="fhir-adapter", version=__version__, lifespan=lifespan, default_response_class=JSONResponse,
        docs_url=None, redoc_url=None,  # openapi.install: the offline pages
        description="Pre-screening (NCT07377058 PROMIS-MDA5) and treatment response (NCT04966884) of anti-MDA5+ "
                    "dermatomyositis patients from the hospital's FHIR R4 server, for integration engines to "
                    "poll. Every endpoint but /health needs an API key: `Authorization: Bearer <key>` or "
                    "`X-API-Key: <key>`. Errors are FHIR OperationOutcome resources naming the field at fault.",
    )
    app.state.settings = settings
    app.state.store = store
    app.state.metrics = metrics
    app.state.keyring = keyring
    app.state.audit = audit
    app.state.evaluator = Evaluator(settings, store, metrics)
    errors.install(app, authenticate)
    app.include_router(api.router)
    app.include_router(jobs_api.router)
    cds_hooks.install(app)  # /cds-services: CDS Hooks for the EHR
    _health_and_metrics(app)
    openapi.install(app)
    app.add_middleware(AccessMiddleware, metrics=metrics, audit=audit, keyring=keyring)
    return app


def _start_poller(app: FastAPI, settings: ServiceSettings) -> threading.Event | None:
    """Start the change poller thread (when it polls and there is a FHIR server); its stop event, or None."""
    if settings.poll_interval_seconds <= 0 or not settings.fhir_base:
        return None
    stop = threading.Event()
    thread = threading.Thread(target=poller.run_poller, args=(app.state, stop), name="fhir-adapter-poller",
                              daemon=True)
    thread.start()
    app.state.poller_thread = thread
    return stop


def _health_and_metrics(app: FastAPI) -> None:
    @app.get("/health/live", tags=["health"], summary="The process is up", response_model=Live)
    async def live() -> dict[str, str]:
        return {"status": "live"}

    @app.get("/health/ready", tags=["health"], summary="The FHIR server and the database answer",
             response_model=Ready, responses=documented(503))
    def ready(request: Request) -> Any:
        state = request.app.state
        checks = {"database": state.store.ping(), "fhir": state.evaluator.fhir_ready()}
        if all(checks.values()):
            return {"status": "ready", "checks": checks}
        request.state.error_kind = "not-ready"
        failed = [issue(f"{name} is not reachable", code="transient", expression=[name])
                  for name, ok in checks.items() if not ok]
        return outcome(503, failed, {"Retry-After": str(state.settings.retry_after_seconds)})

    @app.get("/metrics", tags=["health"], summary="Prometheus metrics (scope metrics:read)",
             response_class=Response, responses={200: {"content": {CONTENT_TYPE: {"schema": {"type": "string"}}}},
                                                 **documented(401, 403)})
    def metrics(request: Request, principal: Annotated[Principal, Depends(require("metrics:read"))]) -> Response:
        return Response(request.app.state.metrics.exposition(), media_type=CONTENT_TYPE)


def app_from_environment() -> FastAPI:
    """The app of ``fhir-adapter serve`` (uvicorn's factory, in every worker process): settings from the
    environment and the settings file ``FHIR_ADAPTER_CONFIG`` names."""
    from fhir_adapter.service import logs

    settings = ServiceSettings.load()
    logs.configure(settings.log_level, settings.log_format)
    return create_app(settings)
