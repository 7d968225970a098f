"""Benchmark: the rule layer's cost per patient (screening alone, in-process, one core).

Reads a generated population once as ``screen`` reads it (the study's look-back prefilter), keeps the records,
then times ``orjson.dumps(screen(record, ...))`` over all of them: the best of ``--repeat`` rounds of process CPU
time (``time.process_time``), in ms a patient. Reading and assembling the records is not in the figure
(``benchmarks/records.py`` measures those).

    python benchmarks/rules.py [--patients 2000] [--study NCT07377058 NCT04966884] [--repeat 5] [--profile]

``--profile`` then screens the population once more under cProfile and prints the functions that take the most
time of their own.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import population, ref_date


def records_of(folder: Path, study: Any, catalog: Any, day: date) -> tuple[list[Any], Any]:
    """Every record of ``folder`` read as ``screen`` reads it for ``study`` (look-back prefilter), and the horizon."""
    from fhir_adapter.sources import open_source
    from fhir_adapter.studies.lookback import prefilter

    skip, horizon = prefilter(study, catalog, day) or (None, None)
    with open_source(str(folder), workers=1) as source:
        return list(source.map_records(lambda r: r, workers=1, prefilter=skip)), horizon


def ms_per_patient(records: list[Any], study: Any, catalog: Any, day: date, horizon: Any, repeat: int) -> float:
    """The best of ``repeat`` rounds of screening every record (process CPU time), in ms a patient."""
    from fhir_adapter.studies.screen import screen

    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        for r in records:
            orjson.dumps(screen(r, study, catalog, day, day, horizon))
        best = min(best, time.process_time() - start)
    return best / len(records) * 1000


def profile(records: list[Any], study: Any, catalog: Any, day: date, horizon: Any, top: int) -> None:
    from fhir_adapter.studies.screen import screen

    prof = cProfile.Profile()
    prof.enable()
    for r in records:
        orjson.dumps(screen(r, study, catalog, day, day, horizon))
    prof.disable()
    pstats.Stats(prof).sort_stats("tottime").print_stats(top)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=2000)
    ap.add_argument("--study", nargs="+", default=["NCT07377058", "NCT04966884"])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/fhir-adapter-bench"))
    ap.add_argument("--profile", action="store_true", help="then profile one round (first study) under cProfile")
    ap.add_argument("--top", type=int, default=30, help="functions --profile prints")
    a = ap.parse_args()

    from fhir_adapter.studies.definition import load_study
    from fhir_adapter.terminology.catalog import Catalog

    folder = population(a.patients, a.cache)
    day, catalog = date.fromisoformat(ref_date(folder)), Catalog.load()
    print(f"{'study':<12} {'patients':>9} {'ms/patient':>11}  (screening alone, in-process, 1 core, "
          f"best of {a.repeat})")
    for i, study_id in enumerate(a.study):
        study = load_study(study_id)
        records, horizon = records_of(folder, study, catalog, day)
        ms = ms_per_patient(records, study, catalog, day, horizon, a.repeat)
        print(f"{study_id:<12} {len(records):>9,} {ms:>11.3f}", flush=True)
        if a.profile and i == 0:
            profile(records, study, catalog, day, horizon, a.top)
        del records
        gc.collect()  # the next study's figure does not pay for freeing this one's records


if __name__ == "__main__":
    main()
