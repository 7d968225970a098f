"""For the hospital only: the patient behind each Patient pseudonym of a sponsor export.

  fhir-adapter reidentify PSEUDONYM... --key-file KEY --source SOURCE [--manifest EXPORT/manifest.json]

Recomputes the pseudonym of every Patient of SOURCE (the source the exported results came from) under KEY,
one Patient at a time, and prints one tab-separated line per pseudonym found: the pseudonym, Patient/<id>, and
the medical record numbers (Patient.identifier typed MR), if any. Those not found are named on standard error
and the exit status is then 1. With --manifest, a key whose fingerprint is not the export's is refused before
anything is read: a wrong key is caught rather than answered with "not found" everywhere.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from fhir_adapter.cli.common import add_source_arguments, open_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pseudonyms", nargs="+", metavar="PSEUDONYM",
                        help="a Patient pseudonym from an export: Patient/<32 hex digits> or the digits alone")
    parser.add_argument("--key-file", type=Path, metavar="FILE",
                        help="the pseudonym key the export was made with (default: $FHIR_ADAPTER_PSEUDONYM_KEY)")
    parser.add_argument("--manifest", type=Path, metavar="FILE",
                        help="the export's manifest.json (or its folder): refuse a key that did not make it")
    add_source_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from fhir_adapter.export import manifest
    from fhir_adapter.export.deidentify import Pseudonymizer, read_key
    from fhir_adapter.export.reidentify import find, parse_pseudonym

    wanted = list(dict.fromkeys(parse_pseudonym(p) for p in args.pseudonyms))
    pseudonymizer = Pseudonymizer(read_key(args.key_file, os.environ.get))
    if args.manifest:
        manifest.check_key(manifest.read(args.manifest), pseudonymizer, f"--manifest {args.manifest}")
    only = set(args.patient or ())
    found = {}
    with open_from_args(args) as source:
        patients = (r for r, _ in source.resources(["Patient"]) if not only or r.get("id") in only)
        for hit in find(wanted, patients, pseudonymizer):
            found[hit.pseudonym] = hit
        problems = source.report.problems + source.report.patients_not_read
    for pseudonym in wanted:
        if hit := found.get(pseudonym):
            print(f"Patient/{pseudonym}\tPatient/{hit.patient_id}\t{','.join(hit.mrns)}")
    sys.stdout.flush()
    missing = [p for p in wanted if p not in found]
    for pseudonym in missing:
        print(f"fhir-adapter: error: Patient/{pseudonym}: not found among the Patients of {args.source}",
              file=sys.stderr)
    if missing and not args.manifest:
        print("fhir-adapter: (was it made with this key? --manifest EXPORT/manifest.json checks the key)",
              file=sys.stderr)
    if missing and problems:
        print(f"fhir-adapter: {problems:,} resources or patients of the source could not be read: the patient may be "
              "among them", file=sys.stderr)
    print(f"fhir-adapter: reidentify: {len(found):,} of {len(wanted):,} found", file=sys.stderr)
    return 1 if missing else 0
