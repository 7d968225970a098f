"""What the benchmarks share: generated populations, and timing a whole ``fhir-adapter`` process.

Peak memory is given two ways: the largest single process (``wait4`` maxrss, as ``../shared/bench/peers.py``
reports it) and the sum over the process tree (sampled from /proc every 50 ms), since the workers are
separate processes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GENERATOR = ROOT.parent / "shared" / "bench" / "gen_population.py"

def bytecode() -> None:
    """Compile the package's bytecode once, as installing a wheel does: with ``PYTHONDONTWRITEBYTECODE`` set (as on
    some build machines) every process would otherwise compile about 60 modules at start-up (0.2-0.4 s), which is
    not what a user's installed adapter pays."""
    import compileall

    compileall.compile_dir(ROOT / "fhir_adapter", quiet=1)


bytecode()

HEADER = f"{'patients':>9} {'best s':>8} {'patients/s':>11} {'cpu s':>7} {'max proc MB':>12} {'tree MB':>8}"


def population(n: int, cache: Path, dm_fraction: float | None = None) -> Path:
    """The NDJSON folder of ``n`` synthetic patients, generated on first use; ``dm_fraction``: the share with
    dermatomyositis (the generator's default, 0.20, is a rheumatology cohort; 0.001 is nearer a whole hospital)."""
    default = dm_fraction is None or dm_fraction == 0.20
    out = cache / (f"n{n}" if default else f"n{n}-dm{dm_fraction:g}")
    if not (out / "population.json").exists():
        if not GENERATOR.exists():
            sys.exit(f"population generator not found: {GENERATOR}")
        extra = [] if default else ["--dm-fraction", str(dm_fraction)]
        subprocess.run([sys.executable, str(GENERATOR), str(n), "--out", str(out), *extra], check=True,
                       stdout=subprocess.DEVNULL)
    return out


def ref_date(folder: Path) -> str:
    """The population's export date (``population.json``): the screening date the benchmarks use."""
    return str(json.loads((folder / "population.json").read_text())["ref_date"])

def tree_rss(pid: int) -> int:
    """Resident memory (bytes) of ``pid`` and all its descendants, read from /proc for those processes only
    (``/proc/PID/task/TID/children``), so sampling costs the measured run almost nothing."""
    page = os.sysconf("SC_PAGE_SIZE")
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * page
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    stack.extend(int(c) for c in f.read().split())
        except (OSError, ValueError):
            continue
    return total


class TreePeak:
    """Peak resident memory of a process tree, sampled from /proc every 50 ms on a thread while used as a context
    manager (``with TreePeak(pid) as peak: ...`` then ``peak.bytes``)."""

    def __init__(self, pid: int) -> None:
        self.pid, self.bytes = pid, 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._done.is_set():
            self.bytes = max(self.bytes, tree_rss(self.pid))
            time.sleep(0.05)

    def __enter__(self) -> TreePeak:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join()


def run_command(args: Sequence[str]) -> dict[str, float]:
    """Run ``fhir-adapter ARGS`` as a process: wall and CPU time, output lines, peak memory."""
    cmd = [sys.executable, "-m", "fhir_adapter.cli.main", "-q", *args]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    with TreePeak(proc.pid) as peak:
        lines = sum(1 for _ in proc.stdout)  # type: ignore[union-attr]
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
    if status != 0:
        sys.exit(f"{' '.join(cmd)} failed with status {status}")
    return {"wall_s": wall, "lines": lines, "cpu_s": usage.ru_utime + usage.ru_stime,
            "maxrss_mb": usage.ru_maxrss / 1024, "tree_mb": peak.bytes / 2**20}


def row(n: int, runs: Sequence[dict[str, float]]) -> str:
    """The printed figures of ``n`` patients: the best run's time, the worst run's memory."""
    best = min(runs, key=lambda r: r["wall_s"])
    if best["lines"] != n:
        sys.exit(f"expected {n} result lines, got {best['lines']}")
    return (f"{n:>9,} {best['wall_s']:>8.2f} {n / best['wall_s']:>11,.0f} {best['cpu_s']:>7.1f} "
            f"{max(r['maxrss_mb'] for r in runs):>12.0f} {max(r['tree_mb'] for r in runs):>8.0f}")
