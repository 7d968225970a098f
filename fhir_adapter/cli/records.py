"""Gather each patient's record from a source and print, one JSON line per patient, what it holds.

Standard output carries only the result lines; warnings and the summary of what was skipped go to
standard error. Exit status 0 when every patient got a record, even when resources were skipped; 1 when a
``--patient`` asked for is not in the source.
"""

from __future__ import annotations

import argparse
import sys

import orjson

from fhir_adapter.cli.common import add_source_arguments, missing_patients, open_from_args, print_report
from fhir_adapter.record.patient_record import PatientRecord


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_source_arguments(parser)


def summarize(record: PatientRecord) -> tuple[str, bytes]:
    return record.patient_id, orjson.dumps(record.summary()) + b"\n"


def run(args: argparse.Namespace) -> int:
    out = sys.stdout.buffer
    seen: set[str] = set()
    with open_from_args(args) as source:
        for pid, line in source.map_records(summarize, args.patient):
            out.write(line)
            seen.add(pid)
        out.flush()
        print_report(source.report, len(seen))
    return missing_patients(args.patient, seen)
