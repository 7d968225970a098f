"""Benchmark: patient records assembled per second from a Bulk Data NDJSON folder, and peak memory.

Generates each population once with ``../shared/bench/gen_population.py`` (cached under ``--cache``), then
times ``fhir-adapter records`` as a whole process, the way a user runs it, and prints its figures. Peak
memory is given two ways: the largest single process (``wait4`` maxrss, as ``peers.py`` reports it) and the
sum over the process tree (sampled from /proc every 20 ms), since the workers are separate processes.

    python benchmarks/records.py --patients 1000 20000 [--workers 2] [--repeat 3]

Goal (issue 2): faster than the floor of Python that parses every line (about 1,050 patients/s on this
kind of machine), with memory flat as the population grows.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GENERATOR = ROOT.parent / "shared" / "bench" / "gen_population.py"


def population(n: int, cache: Path) -> Path:
    """The NDJSON folder of ``n`` synthetic patients, generated on first use."""
    out = cache / f"n{n}"
    if not (out / "population.json").exists():
        if not GENERATOR.exists():
            sys.exit(f"population generator not found: {GENERATOR}")
        subprocess.run([sys.executable, str(GENERATOR), str(n), "--out", str(out)], check=True,
                       stdout=subprocess.DEVNULL)
    return out


def _tree_rss(pid: int) -> int:
    """Resident memory (bytes) of ``pid`` and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry))
            rss[int(entry)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        total += rss.get(p, 0)
        stack.extend(children.get(p, []))
    return total


def run_once(folder: Path, workers: int | None) -> dict[str, float]:
    cmd = [sys.executable, "-m", "fhir_adapter.cli.main", "-q", "records", "--source", str(folder)]
    if workers:
        cmd += ["--workers", str(workers)]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    peak_tree = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak_tree
        while not done.is_set():
            peak_tree = max(peak_tree, _tree_rss(proc.pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    lines = sum(1 for _ in proc.stdout)  # type: ignore[union-attr]
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    done.set()
    sampler.join()
    if status != 0:
        sys.exit(f"{' '.join(cmd)} failed with status {status}")
    return {"wall_s": wall, "patients": lines, "cpu_s": usage.ru_utime + usage.ru_stime,
            "maxrss_mb": usage.ru_maxrss / 1024, "tree_mb": peak_tree / 2**20}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, nargs="+", default=[1000, 20000])
    ap.add_argument("--workers", type=int, default=None, help="default: the adapter's default (all cores)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per size; the best is reported")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/fhir-adapter-bench"))
    a = ap.parse_args()
    print(f"{'patients':>9} {'best s':>8} {'patients/s':>11} {'cpu s':>7} {'max proc MB':>12} {'tree MB':>8}")
    for n in a.patients:
        folder = population(n, a.cache)
        runs = [run_once(folder, a.workers) for _ in range(a.repeat)]
        best = min(runs, key=lambda r: r["wall_s"])
        if best["patients"] != n:
            sys.exit(f"expected {n} records, got {best['patients']}")
        print(f"{n:>9,} {best['wall_s']:>8.2f} {n / best['wall_s']:>11,.0f} {best['cpu_s']:>7.1f} "
              f"{max(r['maxrss_mb'] for r in runs):>12.0f} {max(r['tree_mb'] for r in runs):>8.0f}", flush=True)


if __name__ == "__main__":
    main()
