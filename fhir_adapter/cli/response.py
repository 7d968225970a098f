"""Treatment response per patient: the 2016 ACR/EULAR Total Improvement Score, inactive disease, endpoint changes
and safety signals, one JSON line per patient on standard output.

NCT04966884: baseline = the first tofacitinib exposure, follow-up = 12 months later. NCT07377058 (alias
promis-mda5): baseline = the randomization date (give --baseline), follow-up = week 8, with the respiratory
course. Without --patient, every patient on the study drug in the source. "tis" is null when a measure is
missing; "tis_range" then gives the lowest and highest totals still possible, and "category" is set only
when they fall in one class. Each line carries the patient's FHIR id ("patient") and medical record number
("mrn"; null when the Patient has none). The line's JSON Schema: profiles/result-line.schema.json. Settings:
studies/response.json; scoring: studies/tis-2016-acr-eular.json.

examples:
  fhir-adapter response --study NCT04966884 --source sample
  fhir-adapter response --study NCT04966884 --source sample --format table --only major,moderate
  fhir-adapter response --study promis-mda5 --source /data/export --patient 123 --baseline 2026-07-01
  fhir-adapter response --study NCT04966884 --source sample --format csv > response.csv
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections import Counter
from contextlib import nullcontext
from datetime import date
from typing import Any

import orjson

from fhir_adapter.cli.common import (
    add_source_arguments,
    add_writeback_arguments,
    catalog_from_args,
    count_mrn,
    csv_writer,
    exit_status,
    iso_date,
    mrn_flag,
    open_from_args,
    open_writer,
    parse_only,
    print_mrns,
    print_report,
    print_unmapped,
    print_write_summary,
    report_write,
    unmapped_command,
)
from fhir_adapter.cli.engine import add_engine_arguments
from fhir_adapter.cli.progress import Progress, estimate_patients
from fhir_adapter.cli.runfile import RunOutput, add_output_arguments
from fhir_adapter.record.patient_record import PatientRecord

log = logging.getLogger("fhir_adapter.response")
MEASURES = ("phga", "ptga", "mmt8", "haq", "enzyme", "extra")


CLASSES = ("major", "moderate", "minimal", "none", "unknown")  # "unknown": no class (category null)


def _cells(*cells: str) -> bytes:
    return "{:<36} {:<20} {:<11} {:<10} {:<9} {:<8} {}\n".format(*cells).encode()


TABLE_HEADER = _cells("patient", "mrn", "TIS", "class", "inactive", "enzyme", "points " + "/".join(MEASURES))


def table_row(result: dict[str, Any]) -> bytes:
    """One readable line: TIS (or its range), class, inactive disease and the points of each measure."""
    tis = result.get("tis")
    rng = result.get("tis_range") or [None, None]
    shown = f"{tis:g}" if tis is not None else f"{rng[0]:g}-{rng[1]:g}" if None not in rng else "-"
    inactive = {True: "yes", False: "no", None: "unknown"}[result.get("inactive_disease")]
    measures = result.get("measures") or {}
    points = "/".join("-" if (m := measures.get(k) or {}).get("points") is None else f"{m['points']:g}"
                      for k in MEASURES)
    enzyme = (measures.get("enzyme") or {}).get("enzyme") or (measures.get("enzyme") or {}).get("concept") or "-"
    patient = str(result.get("patient", "")).removeprefix("Patient/")
    return _cells(patient, result.get("mrn") or "-", shown, result.get("category") or "-", inactive, enzyme, points)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    s = parser.add_argument_group("study")
    s.add_argument("--study", required=True, metavar="STUDY",
                   help="NCT04966884 (tofacitinib) or NCT07377058 / promis-mda5 (tocilizumab)")
    s.add_argument("--baseline", type=iso_date, metavar="YYYY-MM-DD",
                   help="baseline date (default: the first study-drug exposure; PROMIS-MDA5: the randomization "
                        "date)")
    s.add_argument("--at", type=iso_date, metavar="YYYY-MM-DD",
                   help="follow-up date (default: baseline + 12 months for NCT04966884, + 8 weeks for PROMIS-MDA5)")
    s.add_argument("--course", action="store_true",
                   help="add 'visits': the scores at every visit after baseline (a time course)")
    s.add_argument("--format", choices=["jsonl", "table", "csv"], default="jsonl",
                   help="jsonl (default): one JSON object per patient; table: TIS, class and points per measure; "
                        "csv: one row per patient (patient, mrn, study, baseline, follow_up, tis, tis_low, tis_high, "
                        "category, inactive_disease, missing, safety), as 'report --format csv' writes it")
    s.add_argument("--only", type=lambda t: parse_only(t, CLASSES, "TIS class"), metavar="CLASS[,CLASS]",
                   help="write only the result lines of these TIS classes (major, moderate, minimal, none; "
                        "unknown: no class could be given), e.g. --only major,moderate; the summary still counts "
                        "every patient")
    add_source_arguments(parser)
    add_engine_arguments(parser)
    add_writeback_arguments(parser)
    add_output_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from fhir_adapter.paths import data_dir
    from fhir_adapter.response.respond import Responder
    from fhir_adapter.response.settings import load_settings
    from fhir_adapter.response.tis import load_rules
    from fhir_adapter.studies.criteria.base import to_map
    from fhir_adapter.studies.evidence import Facts
    from fhir_adapter.studies.unmapped import UnmappedTally
    from fhir_adapter.terminology.exposure import DRUG_TYPES

    settings = load_settings()
    study = settings.study(args.study)
    catalog = catalog_from_args(args)
    responder = Responder(study, settings, load_rules(), catalog, baseline=args.baseline, at=args.at,
                          course=args.course)
    today = date.today()
    every = not args.patient
    writer = open_writer(args)  # issue 6: None unless --write-back or --dry-run
    writing = writer is not None
    counts: Counter[str] = Counter()
    run_out = RunOutput.from_args(args, "response", resumable=args.format == "jsonl" and not args.dry_run
                                   and args.only is None)
    quiet = args.quiet

    def one(record: PatientRecord) -> tuple[str, bytes | None, dict[str, Any]]:
        """Runs in the workers: the line, and for the summary the patient's unmapped records and whether a
        patient not on the study drug may be on it through a product code that maps to nothing."""
        facts = Facts(record, catalog, today, today)
        tally = UnmappedTally()
        tally.add_records(facts.unmapped_keys())
        if every and not responder.on_study_drug(record):
            found = facts.possible(DRUG_TYPES, concepts=[study.drug_concept])
            if found:
                log.warning("%s: not scored, but may be on %s: %s", record.reference, study.drug_concept,
                            to_map(found))
            return record.patient_id, None, {"tally": tally or None, "possibly_on_drug": bool(found)}
        result = responder(record)
        brief = {"category": result.get("category"), "inactive": result.get("inactive_disease"),
                 "result": result if writing or args.format == "csv" else None, "tally": tally or None,
                 "mrn": mrn_flag(result)}
        line = table_row(result) if args.format == "table" else orjson.dumps(result) + b"\n"
        return record.patient_id, line, brief

    out = sys.stdout.buffer
    seen: set[str] = set()
    written = skipped = 0
    classes: Counter[str] = Counter()
    unmapped = UnmappedTally()
    possibly_on_drug = 0
    with open_from_args(args) as source, run_out or nullcontext():
        if run_out is not None:
            out = run_out.begin(source, [data_dir("studies") / "response.json",  # type: ignore[assignment]
                                         data_dir("studies") / "tis-2016-acr-eular.json"])
            for result in run_out.previous:  # --resume: the patients scored before the interruption
                seen.add(result["patient"].removeprefix("Patient/"))
                written += 1
                classes[str(result.get("category") or "unknown")] += 1
            one = run_out.skip_done(one)
        csv_rows = None
        if args.format == "table":
            out.write(TABLE_HEADER)
        elif args.format == "csv":
            from fhir_adapter.report.render import RESPONSE_CSV, CsvRows
            from fhir_adapter.report.responses import response_row

            csv_rows = csv_writer(out, CsvRows, "response", RESPONSE_CSV, lambda r: response_row(r, study.id))
        progress = Progress("response", estimate_patients(source, args.patient), quiet=quiet)
        for item in source.map_records(one, args.patient):
            progress.advance()
            if not item:  # --resume: done before
                continue
            pid, line, brief = item
            seen.add(pid)
            unmapped.merge(brief.get("tally"))
            possibly_on_drug += bool(brief.get("possibly_on_drug"))
            if line is None:
                skipped += 1
                continue
            if writer is not None and brief["result"] is not None:
                from fhir_adapter.writeback.build import response_observations

                result = orjson.loads(orjson.dumps(brief["result"]))
                outcome = writer.write(pid, response_observations(result), study.id)
                report_write(outcome, out if args.dry_run else None, counts)
            written += 1
            cls = str(brief["category"] or "unknown")
            classes[cls] += 1
            count_mrn(counts, brief["mrn"])
            if not args.dry_run and (args.only is None or cls in args.only):
                if csv_rows is not None:
                    csv_rows(brief["result"])
                else:
                    out.write(line)
        progress.close()
        out.flush()
        if not quiet:
            print_report(source.report, len(seen))
    drug = study.drug_concept
    if every and not quiet:
        print(f"fhir-adapter: {written:,} on {drug} scored for {study.id}; {skipped:,} not on {drug}",
              file=sys.stderr)
    if classes and not quiet:
        summary = ", ".join(f"{k} {v}" for k, v in sorted(classes.items()))
        print(f"fhir-adapter: TIS class: {summary}", file=sys.stderr)
    if args.only is not None and not quiet:
        shown = sum(n for k, n in classes.items() if k in args.only)
        print(f"fhir-adapter: --only {','.join(sorted(args.only))}: {shown:,} result line{'s' if shown != 1 else ''} "
              "written (the counts above are of every patient scored)", file=sys.stderr)
    print_mrns(counts, catalog)
    affected = (f"{possibly_on_drug:,} patient{'s' if possibly_on_drug != 1 else ''} not scored may be on {drug}: "
                "a drug record whose code maps to nothing names it (map the code to score them)") \
        if possibly_on_drug else None
    print_unmapped(unmapped, unmapped_command(args), affected)
    if writer is not None and not quiet:
        print_write_summary(counts, args.dry_run)
    status = exit_status(source.report, args.patient, seen)
    status = 1 if counts["errors"] else status
    if run_out is not None:
        run_out.finish(status, {"patients": len(seen), "scored": written, "not_on_drug": skipped,
                                "tis_class": dict(sorted(classes.items())),
                                **({"write_back": dict(sorted(counts.items()))} if writer is not None else {})},
                       source.report)
    return status
