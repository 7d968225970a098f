"""Gather each patient's record from a source and print, one JSON line per patient, what it holds.

Standard output carries only the result lines; warnings and the summary of what was skipped go to
standard error. Exit status 0 when every patient got a record, even when resources were skipped; 1 when a
--patient asked for is not in the source.

With --study (and --as-of, default today), the records hold what that study's screen reads: Observations
older than every look-back that reads them are skipped before parsing (the study file's
observation_lookback), as screen does.

examples:
  fhir-adapter records --source sample --patient mda5-ild-02-local
  fhir-adapter records --source /data/export --study NCT07377058 --as-of 2026-06-30
"""

from __future__ import annotations

import argparse
import sys
from contextlib import nullcontext

import orjson

from fhir_adapter.cli.common import (
    add_source_arguments,
    catalog_from_args,
    exit_status,
    iso_date,
    open_from_args,
    print_report,
    today_or,
)
from fhir_adapter.cli.progress import Progress, estimate_patients
from fhir_adapter.cli.runfile import RunOutput, add_output_arguments
from fhir_adapter.errors import ConfigError
from fhir_adapter.record.patient_record import PatientRecord


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--study", help="read only what this study's screen reads (with --as-of)")
    parser.add_argument("--as-of", type=iso_date, metavar="YYYY-MM-DD",
                        help="the screening date for --study (default: today)")
    add_source_arguments(parser)
    add_output_arguments(parser)


def summarize(record: PatientRecord) -> tuple[str, bytes]:
    return record.patient_id, orjson.dumps(record.summary()) + b"\n"


def run(args: argparse.Namespace) -> int:
    from fhir_adapter.studies.definition import find_study

    out = sys.stdout.buffer
    seen: set[str] = set()
    skip = None
    if args.study or args.as_of:
        if not args.study:
            raise ConfigError("--as-of goes with --study (the screening date of that study's look-backs)")
        from fhir_adapter.studies.definition import load_study
        from fhir_adapter.studies.lookback import prefilter

        found = prefilter(load_study(args.study), catalog_from_args(args), today_or(args.as_of)[0])
        skip = found[0] if found else None
    run_out = RunOutput.from_args(args, "records")
    fn = summarize
    with open_from_args(args) as source, run_out or nullcontext():
        if run_out is not None:
            out = run_out.begin(source, [find_study(args.study)] if args.study else [])  # type: ignore[assignment]
            seen |= run_out.done  # --resume: the patients done before the interruption
            fn = run_out.skip_done(summarize)
        progress = Progress("records", estimate_patients(source, args.patient), quiet=args.quiet)
        for item in source.map_records(fn, args.patient, prefilter=skip):
            progress.advance()
            if not item:  # --resume: done before
                continue
            pid, line = item
            out.write(line)
            seen.add(pid)
        progress.close()
        out.flush()
        if not args.quiet:
            print_report(source.report, len(seen))
    status = exit_status(source.report, args.patient, seen)
    if run_out is not None:
        run_out.finish(status, {"patients": len(seen)}, source.report)
    return status
