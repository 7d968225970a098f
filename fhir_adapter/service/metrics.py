"""Prometheus metrics of one service instance, in the app's own registry (several apps in one process, as in
the tests, do not collide). With ``--workers N`` set ``PROMETHEUS_MULTIPROC_DIR`` to an empty directory so that
/metrics adds up every worker (prometheus_client's multiprocess mode)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    def __init__(self) -> None:
        disable_created_metrics()  # no *_created series: half the exposition, no use in alerts
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("fhir_adapter_http_requests", "HTTP requests by route template and status",
                                ["method", "route", "status"], registry=r)
        self.latency = Histogram("fhir_adapter_http_request_duration_seconds", "HTTP request latency",
                                 ["method", "route"], registry=r,
                                 buckets=(.001, .0025, .005, .01, .02, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))
        self.evaluations = Counter("fhir_adapter_evaluations", "patient evaluations by study, kind and status "
                                   "(the result's status, or the error)", ["study", "kind", "status", "origin"],
                                   registry=r)
        self.errors = Counter("fhir_adapter_errors", "error answers and failures by kind", ["kind"], registry=r)
        self.fhir_retries = Counter("fhir_adapter_fhir_retries", "FHIR requests sent again after a transient "
                                    "failure (counted where the client's retry policy waits)", registry=r)
        self.feed_appends = Counter("fhir_adapter_feed_appends", "feed entries appended", ["study", "kind",
                                    "origin"], registry=r)

    def retry_sleep(self, sleep: Callable[[float], None] = time.sleep) -> Callable[[float], None]:
        """A ``RetryPolicy.sleep`` that counts each retry, then waits."""
        def counted(seconds: float) -> None:
            self.fhir_retries.inc()
            sleep(seconds)
        return counted

    def exposition(self) -> bytes:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)
