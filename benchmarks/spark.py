"""The Spark engine beside the command line, same run, same two cores: patients/s, CPU, peak memory of the whole
process tree (the JVM and its Python workers are children of the command), start-up, and local[1] against local[2].

Each engine runs ``fhir-adapter screen`` whole as a process on a population of ``benchmarks/measure.population``;
start-up is a separate process that starts a session and runs one trivial job. Line counts are checked.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from measure import HEADER, population, ref_date, row, run_command

STARTUP = ("from fhir_adapter.spark.session import session; s = session({master!r}); s.range(1).count(); s.stop()")


def startup(master: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", STARTUP.format(master=master)], check=True, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, nargs="+", default=[20000])
    ap.add_argument("--masters", nargs="+", default=["local[2]", "local[1]"])
    ap.add_argument("--cache", type=Path, default=Path("/tmp/fhir-adapter-bench"))
    a = ap.parse_args()
    for master in a.masters:
        print(f"spark start-up {master}: {startup(master):.1f} s (session and one trivial job)", flush=True)
    print(f"{'engine':<16} {HEADER}")
    for n in a.patients:
        folder = population(n, a.cache)
        args = ["screen", "--study", "NCT07377058", "--source", str(folder), "--as-of", ref_date(folder)]
        local = run_command(args)
        print(f"{'command line':<16} {row(n, [local])}", flush=True)
        for master in a.masters:
            spark = run_command([*args, "--engine", "spark", "--spark-master", master])
            print(f"{'spark ' + master:<16} {row(n, [spark])}  ({n / spark['wall_s'] / (n / local['wall_s']):.2f}x "
                  "the command line)", flush=True)


if __name__ == "__main__":
    main()
