"""Benchmark: latency (p50, p99) and throughput of the service's endpoints under a bounded load on loopback.

Starts the real service (``fhir-adapter serve``, uvicorn on 127.0.0.1) with 1 and with 2 workers against the
FHIR server with the built-in sample loaded, and sends a fixed number of requests at a fixed concurrency
(threads, one keep-alive ``httpx.Client`` each) for:

- ``idle feed poll``: ``GET /v1/feed?since=<the end>`` with ``If-None-Match`` -> 304 (what an engine polling
  every minute costs when nothing happened);
- ``feed page 100``: ``GET /v1/feed?limit=100`` from the start -> 200 with 100 entries;
- ``evaluate``: ``POST /v1/evaluate`` screening one sample patient (read from the FHIR server) -> 200.

The feed is filled beforehand with ``--feed`` entries written straight into the state database; the change
poller is off (``poll_interval_seconds=0``) so that only the requests are measured.

    python benchmarks/service_latency.py [--workers 1 2] [--requests 2000] [--concurrency 1 8] [--fhir URL]

Goal (issue 7): an idle feed poll's p99 under 20 ms on this machine.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
KEY = "benchmark-key-0123456789abcdef"
HEADER = (f"{'workers':>7}  {'request':<16} {'requests':>8} {'conc':>4} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8} "
          f"{'errors':>6}")
SAMPLE_TAG = "http://fhir-adapter.org/fhir/CodeSystem/sample|sample"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fill_feed(database_url: str, n: int) -> None:
    """``n`` synthetic screening entries in the feed (distinct patients), straight into the store."""
    from fhir_adapter.service.store import Store

    store = Store(database_url)
    store.create_all()
    for i in range(n):
        store.append_result("NCT07377058", "screening", f"bench-{i:05d}",
                            {"patient": f"Patient/bench-{i:05d}", "study": "NCT07377058", "status": "ineligible",
                             "criteria": {"I1": {"result": "not-met", "evidence": [f"Observation/w{i}"]}}},
                            "evaluate")
    store.close()


def sample_patients(fhir: str) -> list[str]:
    """The sample's Patient ids, after loading the sample into the FHIR server unless it is there already
    (loading again would make a new version of every resource, thousands of changes for any poller)."""
    from fhir_adapter.client import FhirClient
    from fhir_adapter.sample.load import load_sample, read_resources, sample_files

    ids = [r["id"] for f in sample_files() if f.stem == "Patient" for r in read_resources(f)]
    with FhirClient(fhir) as client:
        page = next(client.search_pages("Patient", {"_tag": SAMPLE_TAG, "_summary": "count"}))
        if (page.bundle.get("total") or 0) < len(ids):
            load_sample(client, batch_size=1000)
    return ids


class Service:
    """``fhir-adapter serve`` in a child process, on a free loopback port."""

    def __init__(self, workers: int, fhir: str, database_url: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "FHIR_ADAPTER_API_KEYS": f'[{{"name": "bench", "key": "{KEY}", '
                                                      '"scopes": ["results:read"]}]',
               "FHIR_ADAPTER_POLL_INTERVAL_SECONDS": "0", "FHIR_ADAPTER_LOG_LEVEL": "warning",
               "FHIR_ADAPTER_AS_OF": "2026-06-30"}
        env.pop("FHIR_ADAPTER_CONFIG", None)
        cmd = [sys.executable, "-m", "fhir_adapter.cli.main", "serve", "--port", str(self.port), "--workers",
               str(workers), "--fhir", fhir, "--database", database_url]
        self.proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                sys.exit(f"the service did not start: {self.proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            try:
                if httpx.get(f"{self.base}/health/live", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        sys.exit("the service did not answer /health/live within 60 s")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


Request = Callable[[httpx.Client, int], bool]  # sends request number i; True when the answer was the expected one


def load(base: str, request: Request, total: int, concurrency: int) -> tuple[list[float], float, int]:
    """``total`` requests from ``concurrency`` threads: latencies (s), wall time (s), unexpected answers."""
    latencies: list[float] = []
    errors = 0
    counter = iter(range(total))
    lock = threading.Lock()
    ready = threading.Barrier(concurrency + 1, timeout=120)  # the clock starts when every connection is warm

    def worker() -> None:
        nonlocal errors
        mine: list[float] = []
        bad = 0
        headers = {"Authorization": f"Bearer {KEY}"}
        with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
            request(client, -1)  # warm the connection (and the worker's caches); not measured
            ready.wait()
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    break
                start = time.perf_counter()
                ok = request(client, i)
                mine.append(time.perf_counter() - start)
                bad += not ok
        with lock:
            latencies.extend(mine)
            errors += bad

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    ready.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    return latencies, time.perf_counter() - start, errors


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def scenarios(base: str, patients: list[str]) -> dict[str, Request]:
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {KEY}"}) as c:
        first = c.get("/v1/feed", params={"limit": 1000})
        first.raise_for_status()
        end = first.json()["next"]
        idle = c.get("/v1/feed", params={"since": end})
        etag = idle.headers["ETag"]

    def idle_poll(client: httpx.Client, i: int) -> bool:
        return client.get("/v1/feed", params={"since": end}, headers={"If-None-Match": etag}).status_code == 304

    def feed_page(client: httpx.Client, i: int) -> bool:
        r = client.get("/v1/feed", params={"limit": 100})
        return r.status_code == 200 and len(r.json()["entries"]) == 100

    def evaluate(client: httpx.Client, i: int) -> bool:
        body = {"study": "NCT07377058", "patient": patients[i % len(patients)], "kind": "screening"}
        return client.post("/v1/evaluate", json=body).status_code == 200

    return {"idle feed poll": idle_poll, "feed page 100": feed_page, "evaluate": evaluate}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fhir", default=os.environ.get("FHIR_BASE", "http://127.0.0.1:8080/fhir"))
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--requests", type=int, default=2000, help="requests per row (evaluate: a tenth of it)")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8], help="in-flight requests (one row each)")
    ap.add_argument("--feed", type=int, default=1000, help="feed entries written before the run")
    a = ap.parse_args()
    if not a.fhir.startswith(("http://127.0.0.1", "http://localhost")):
        sys.exit("the benchmark talks to a FHIR server on loopback only")
    patients = sample_patients(a.fhir)
    print(HEADER)
    with tempfile.TemporaryDirectory(prefix="fhir-adapter-bench-") as tmp:
        for workers in a.workers:
            database_url = f"sqlite:///{Path(tmp) / f'state-{workers}.db'}"
            fill_feed(database_url, max(a.feed, 100))
            service = Service(workers, a.fhir, database_url)
            try:
                for name, request in scenarios(service.base, patients).items():
                    for conc in a.concurrency:
                        total = max(a.requests // 10, conc) if name == "evaluate" else a.requests
                        latencies, wall, errors = load(service.base, request, total, conc)
                        print(f"{workers:>7}  {name:<16} {total:>8,} {conc:>4} "
                              f"{percentile(latencies, 50) * 1000:>8.1f} {percentile(latencies, 99) * 1000:>8.1f} "
                              f"{total / wall:>8,.1f} {errors:>6}", flush=True)
            finally:
                service.stop()


if __name__ == "__main__":
    main()
