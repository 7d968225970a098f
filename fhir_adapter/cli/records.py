"""Gather each patient's record from a source and print, one JSON line per patient, what it holds.

Standard output carries only the result lines; warnings and the summary of what was skipped go to
standard error. Exit status 0 when every patient got a record, even when resources were skipped.
"""

from __future__ import annotations

import argparse
import sys

import orjson

from fhir_adapter.cli.common import add_source_arguments, open_from_args, print_report
from fhir_adapter.record.patient_record import PatientRecord


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_source_arguments(parser)


def summarize(record: PatientRecord) -> bytes:
    return orjson.dumps(record.summary()) + b"\n"


def run(args: argparse.Namespace) -> int:
    out = sys.stdout.buffer
    n = 0
    with open_from_args(args) as source:
        for line in source.map_records(summarize, args.patient):
            out.write(line)
            n += 1
        out.flush()
        print_report(source.report, n)
    return 0
