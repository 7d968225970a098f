"""Server source: patients/s at several concurrencies, beside the server's own search rate, in the same run.

The sample population is loaded into a real FHIR server (SEKMET, started here on a free port unless ``--fhir``
names one); then, for each request plan (one search per clinical type; ``Patient/$everything``) and each
``--concurrency``, every patient on the server is read (``ServerSource.records``, what ``screen --source URL``
reads), and the server's own rate is measured with ``--searches`` ``Observation?patient=`` searches sent one at a
time and then from 8 threads. The adapter keeps up with the server when its requests/s at concurrency 8 come near
the server's concurrent search rate.

    .venv/bin/python benchmarks/server.py [--fhir URL] [--concurrency 1 4 8] [--repeat 2]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fhir_adapter.client import FhirClient  # noqa: E402
from fhir_adapter.sample.load import load_sample  # noqa: E402
from fhir_adapter.sources.server import ServerSource  # noqa: E402

SERVER_SCRIPTS = ROOT.parent / "shared" / "fhir-server"


@contextmanager
def server(base: str | None) -> Iterator[str]:
    """``base``, or a SEKMET started here on a free port (stopped at the end)."""
    if base:
        yield base
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    env = {**os.environ, "FHIR_PORT": port}
    out = subprocess.run([str(SERVER_SCRIPTS / "start")], env=env, check=True, capture_output=True, text=True,
                         timeout=600)
    try:
        yield out.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run([str(SERVER_SCRIPTS / "stop")], env=env, check=False, capture_output=True, timeout=60)


def patient_ids(base: str) -> list[str]:
    ids: list[str] = []
    with FhirClient(base) as client:
        for page in client.search_pages("Patient", {"_elements": "id"}, count=1000):
            ids.extend(r["id"] for r in page.resources())
    return ids


def search_rate(base: str, ids: list[str], n: int, threads: int) -> float:
    """``Observation?patient=`` searches per second, ``n`` of them from ``threads`` threads (a session each)."""
    def work(k: int) -> None:
        with requests.Session() as session:
            for i in range(k, n, threads):
                answer = session.get(f"{base}/Observation", params={"patient": f"Patient/{ids[i % len(ids)]}",
                                                                    "_count": 200},
                                     headers={"Accept": "application/fhir+json"}, timeout=60)
                answer.raise_for_status()
                answer.json()

    start = time.perf_counter()
    workers = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return n / (time.perf_counter() - start)


def read_all(base: str, concurrency: int, plan: str) -> tuple[int, float, int, int]:
    """Every patient read once: (patients, seconds, requests, lowest limit of the throttle)."""
    sent = [0]

    def count(response: requests.Response, *args: object, **kwargs: object) -> None:
        sent[0] += 1

    client = FhirClient(base)
    client.session.hooks["response"].append(count)
    with ServerSource(base, client=client, concurrency=concurrency, plan=plan) as source:
        start = time.perf_counter()
        patients = sum(1 for _ in source.records())
        seconds = time.perf_counter() - start
        lowest = source.throttle.aimd.lowest if source.throttle else 1
    client.close()
    return patients, seconds, sent[0], lowest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fhir", default=os.environ.get("FHIR_BASE"),
                    help="a server with nothing but the sample on it (default: start one here)")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8])
    ap.add_argument("--plans", nargs="+", default=["searches", "everything"], choices=["searches", "everything"])
    ap.add_argument("--searches", type=int, default=500, help="searches for the server's own rate")
    ap.add_argument("--repeat", type=int, default=1, help="rounds of the whole table (the machine is shared)")
    args = ap.parse_args()
    with server(args.fhir) as base:
        with FhirClient(base) as client:
            load_sample(client, batch_size=1000)
        ids = patient_ids(base)
        print(f"server {base}: {len(ids)} patients", flush=True)
        for round_ in range(args.repeat):
            seq = search_rate(base, ids, args.searches, 1)
            par = search_rate(base, ids, args.searches, 8)
            print(f"round {round_ + 1}: server Observation?patient= searches/s: {seq:,.0f} one at a time, "
                  f"{par:,.0f} from 8 threads", flush=True)
            print(f"{'plan':<11}{'concurrency':>12}{'patients':>10}{'seconds':>9}{'patients/s':>12}{'requests/s':>12}"
                  f"{'lowest limit':>14}{'x conc. 1':>11}")
            for plan in args.plans:
                first = None
                for c in args.concurrency:
                    patients, seconds, sent, lowest = read_all(base, c, plan)
                    rate = patients / seconds
                    first = first or rate
                    print(f"{plan:<11}{c:>12}{patients:>10}{seconds:>9.2f}{rate:>12.1f}{sent / seconds:>12.0f}"
                          f"{lowest:>14}{rate / first:>11.2f}", flush=True)


if __name__ == "__main__":
    main()
