"""Benchmark: patient records assembled per second from a Bulk Data NDJSON folder, and peak memory.

Generates each population once with ``../shared/bench/gen_population.py`` (cached under ``--cache``), then
times ``fhir-adapter records`` as a whole process, the way a user runs it, and prints its figures. Peak
memory is given two ways (see ``measure.py``).

    python benchmarks/records.py --patients 1000 20000 [--workers 2] [--repeat 3] [--study NCT07377058]

``--study`` times the records that study's screen reads (``records --study S --as-of <export date>``:
Observations older than every look-back that reads them are skipped before parsing).

Goal (issue 2): faster than the floor of Python that parses every line (about 1,050 patients/s on this
kind of machine), with memory flat as the population grows.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import HEADER, population, ref_date, row, run_command


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, nargs="+", default=[1000, 20000])
    ap.add_argument("--workers", type=int, default=None, help="default: the adapter's default (all cores)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per size; the best is reported")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/fhir-adapter-bench"))
    ap.add_argument("--study", help="records as that study's screen reads them (as of the export date)")
    a = ap.parse_args()
    print(HEADER)
    for n in a.patients:
        folder = population(n, a.cache)
        args = ["records", "--source", str(folder)]
        if a.study:
            args += ["--study", a.study, "--as-of", ref_date(folder)]
        if a.workers:
            args += ["--workers", str(a.workers)]
        print(row(n, [run_command(args) for _ in range(a.repeat)]), flush=True)


if __name__ == "__main__":
    main()
