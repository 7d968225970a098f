"""The Spark engine beside the command line, same run, same two cores: patients/s, CPU, peak memory of the whole
process tree (the JVM and its Python workers are children of the command), start-up, and local[1] against local[2].

Each engine runs ``fhir-adapter screen`` whole as a process on a population of ``benchmarks/measure.population``;
start-up is a separate process that starts a session and runs one trivial job. Line counts are checked. CPU is that
of the whole process tree (``tree cpu s``: the JVM and the Python workers are not waited for by the command, so
``wait4`` does not count them), read from /proc while it runs.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from measure import HEADER, population, ref_date, row, run_command

STARTUP = ("from fhir_adapter.spark.session import session; s = session({master!r}); s.range(1).count(); s.stop()")


def startup(master: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", STARTUP.format(master=master)], check=True, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and its descendants so far, with the children each has waited for."""
    tick = os.sysconf("SC_CLK_TCK")
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
            total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    stack.extend(int(c) for c in f.read().split())
        except (OSError, ValueError):
            continue
    return total / tick


def run_tree(args: list[str]) -> dict[str, float]:
    """``measure.run_command`` with the CPU of the whole process tree (``tree_cpu_s``: this process's children and
    their descendants, sampled every 50 ms while it runs)."""
    peak = 0.0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        me = os.getpid()
        while not done.is_set():
            kids: list[int] = []
            for task in os.listdir(f"/proc/{me}/task"):
                with open(f"/proc/{me}/task/{task}/children") as f:
                    kids.extend(int(c) for c in f.read().split())
            peak = max(peak, sum(tree_cpu(k) for k in kids))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        out = run_command(args)
    finally:
        done.set()
        sampler.join()
    out["tree_cpu_s"] = max(peak, out["cpu_s"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, nargs="+", default=[20000])
    ap.add_argument("--masters", nargs="+", default=["local[2]", "local[1]"])
    ap.add_argument("--cache", type=Path, default=Path("/tmp/fhir-adapter-bench"))
    a = ap.parse_args()
    for master in a.masters:
        print(f"spark start-up {master}: {startup(master):.1f} s (session and one trivial job)", flush=True)
    print(f"{'engine':<16} {HEADER} {'tree cpu s':>10}")
    for n in a.patients:
        folder = population(n, a.cache)
        args = ["screen", "--study", "NCT07377058", "--source", str(folder), "--as-of", ref_date(folder)]
        local = run_tree(args)
        print(f"{'command line':<16} {row(n, [local])} {local['tree_cpu_s']:>10.1f}", flush=True)
        walls = {}
        for master in a.masters:
            spark = run_tree([*args, "--engine", "spark", "--spark-master", master])
            walls[master] = spark["wall_s"]
            print(f"{'spark ' + master:<16} {row(n, [spark])} {spark['tree_cpu_s']:>10.1f}  "
                  f"({n / spark['wall_s'] / (n / local['wall_s']):.2f}x the command line)", flush=True)
        if "local[1]" in walls and "local[2]" in walls:
            print(f"speed-up local[1] -> local[2]: {walls['local[1]'] / walls['local[2]']:.2f}x", flush=True)


if __name__ == "__main__":
    main()
