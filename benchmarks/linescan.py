"""Benchmark: pass 1's look-back check per line, compiled scanner against the Python loop, same decisions.

Reads the Observation file of a generated population (cached like the other benchmarks) in the buffers pass 1
uses and times ``ObservationPrefilter.kept`` (the compiled ``sources/_linescan.c`` where built) beside
``kept_by_python``, after one warm-up pass that fills the coding-list cache as a real run does early on.

    python benchmarks/linescan.py [--patients 2000] [--megabytes 200]
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import population, ref_date


def main() -> None:
    from fhir_adapter.sources import prefilter as pf_module
    from fhir_adapter.sources.reading import Unit, _buffers
    from fhir_adapter.studies.definition import load_study
    from fhir_adapter.studies.lookback import prefilter
    from fhir_adapter.terminology.catalog import Catalog

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=2000)
    ap.add_argument("--megabytes", type=int, default=200, help="how much of the Observation file to scan")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/fhir-adapter-bench"))
    a = ap.parse_args()
    folder = population(a.patients, a.cache)
    day = date.fromisoformat(ref_date(folder))
    made = prefilter(load_study("NCT07377058"), Catalog.load(), day)
    assert made is not None
    pf = made[0]
    path = folder / "Observation.ndjson"
    unit = Unit(0, 0, min(path.stat().st_size, a.megabytes << 20))
    buffers = [bytes(b) for b in _buffers(path, unit)]
    for b in buffers:
        pf.kept(b)  # warm: every coding list decided once
    ways = [("compiled scanner", pf.kept)] if pf_module._scan is not None else []
    ways.append(("Python loop", pf.kept_by_python))
    print(f"{'way':<18} {'lines':>10} {'kept':>8} {'s':>6} {'µs a line':>10} {'MB/s':>7}")
    size = sum(map(len, buffers)) / 1e6
    for name, kept in ways:
        start = time.perf_counter()
        lines = held = 0
        for b in buffers:
            found, count = kept(b)
            lines += count
            held += len(found)
        took = time.perf_counter() - start
        print(f"{name:<18} {lines:>10,} {held:>8,} {took:>6.2f} {took / lines * 1e6:>10.2f} {size / took:>7,.0f}")
    if pf_module._scan is None:
        print("(the compiled scanner is not built here: pip install -e . builds it)")


if __name__ == "__main__":
    main()
