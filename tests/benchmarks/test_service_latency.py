"""The service latency benchmark still runs and prints its table (a smoke test with a few requests, not a timing)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_service_latency_benchmark_prints_its_figures(fhir_base: str) -> None:
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "service_latency.py"), "--fhir", fhir_base,
                           "--workers", "1", "--requests", "20", "--concurrency", "2", "--feed", "120"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    header, *rows = done.stdout.strip().splitlines()
    assert "p99 ms" in header and "req/s" in header
    by_name = {" ".join(r.split()[1:-6]): r.split() for r in rows}
    assert set(by_name) == {"idle feed poll", "feed page 100", "evaluate"}
    for cells in by_name.values():
        assert cells[0] == "1" and cells[-1] == "0"  # one worker; no unexpected answer (304 / 100 entries / 200)
        assert 0 < float(cells[-4]) <= float(cells[-3])  # p50 <= p99, in ms
        assert float(cells[-2].replace(",", "")) > 0  # requests per second
