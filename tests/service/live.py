"""The service's app on a real HTTP port in this process (uvicorn in a thread), for clients that need a URL:
schemathesis, a generated client, the browser. Its job runner is made but never started: jobs are accepted and
queued, and no population screen runs while a fuzzer submits them."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """``app`` served on 127.0.0.1 (a free port) while the block runs; its base URL."""
    from fhir_adapter.service.jobs import JobRunner

    if getattr(app.state, "jobs", None) is None:
        app.state.jobs = JobRunner(app.state.store, app.state.settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="test-service", daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the test service did not start")
        thread.join(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
