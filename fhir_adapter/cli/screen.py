"""Pre-screen patients for a study: one JSON line per patient with each criterion's result and a status.

The study's entry criteria are evaluated first: a patient for whom one is decided not-met is out of the entry
cohort and gets a short line ("cohort": "out", only that criterion); --all-criteria evaluates every criterion
for every patient. The summary counts the patients out of the cohort by the criterion that ruled them out.

Each criterion is met, not-met or unknown, with the reason, the resources that decided it, and where useful
the setting that decided it, the date it would pass from and what would resolve it. The status is
ineligible, potential-candidate or candidate (never "eligible": a person decides that). Each line carries the
patient's FHIR id ("patient") and medical record number ("mrn"; null when the Patient has none). The line's
JSON Schema: profiles/result-line.schema.json. Standard output carries only the result lines (or the table or
CSV); messages and the summary go to standard error.

examples:
  fhir-adapter screen --study promis-mda5 --source sample
  fhir-adapter screen --study NCT07377058 --source /data/export --site site.json --as-of 2026-06-30 > screen.jsonl
  fhir-adapter screen --study NCT07377058 --source sample --only candidate,potential-candidate --format table
  fhir-adapter screen --study NCT04966884 --source sample --format csv > worklist.csv
  fhir-adapter screen --study NCT07377058 --source https://fhir.example.org/R4 --token-file token.txt \\
      --export-group 42 --since 2026-06-01T00:00:00+08:00
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from contextlib import nullcontext
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
    today_or,
    unmapped_command,
)
from fhir_adapter.cli.engine import add_engine_arguments
from fhir_adapter.cli.progress import Progress, estimate_patients
from fhir_adapter.cli.runfile import RunOutput, add_output_arguments
from fhir_adapter.errors import ConfigError

STATUSES = ("candidate", "potential-candidate", "ineligible")


def _setting(text: str) -> tuple[str, Any]:
    name, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    try:
        return name.strip(), json.loads(value)
    except json.JSONDecodeError:
        return name.strip(), value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--study", required=True,
                        help="study id or alias (NCT07377058/promis-mda5, NCT04966884/tofacitinib) or a study file")
    parser.add_argument("--as-of", type=iso_date, metavar="YYYY-MM-DD",
                        help="screening date S: anchors every window (default: today, for scheduled runs; the "
                             "summary says which date was used)")
    parser.add_argument("--randomization", type=iso_date, metavar="YYYY-MM-DD",
                        help="expected randomization date R (default: the screening date)")
    parser.add_argument("--format", choices=["jsonl", "table", "csv"], default="jsonl",
                        help="jsonl (default): one JSON object a line, everything; table: one readable row a "
                             "patient; csv: one row a patient (patient, mrn, study, as_of, status, cohort, "
                             "failing, unknown, for_person, passes_from), as 'report --format csv' writes it")
    parser.add_argument("--only", type=lambda t: parse_only(t, STATUSES, "status"), metavar="STATUS[,STATUS]",
                        help="write only the result lines of these statuses (candidate, potential-candidate, "
                             "ineligible), e.g. --only candidate,potential-candidate; the summary still counts "
                             "every patient")
    parser.add_argument("--setting", action="append", type=_setting, default=[], metavar="NAME=VALUE",
                        help="override a study setting (see the study file), e.g. e8_fvc_decline=relative")
    parser.add_argument("--all-criteria", action="store_true",
                        help="evaluate every criterion for every patient, also those out of the study's entry "
                             "cohort (by default a patient whose entry criterion, e.g. I2, is not met gets a short "
                             "result with that criterion only: \"cohort\": \"out\")")
    parser.add_argument("--full-history", action="store_true",
                        help="parse every Observation of NDJSON sources, also those older than every look-back "
                             "that reads them (skipped unparsed by default: the study file's observation_lookback)")
    add_source_arguments(parser)
    add_engine_arguments(parser)
    add_writeback_arguments(parser)
    add_output_arguments(parser)


def _table_line(out: dict[str, Any], kinds: dict[str, str], information: bool = False) -> str:
    """One row: patient, status, failing criteria (and the date they would pass from), the machine-decidable
    unknowns, then (for a study with information items) each item's one-line summary. A patient out of the entry
    cohort (short result): the entry criterion that ruled them out, nothing else evaluated."""
    crit = {k: v for k, v in out["criteria"].items() if k in kinds}
    failing = [k for k, v in crit.items() if v["result"] == ("not-met" if kinds[k] == "inclusion" else "met")]
    open_ = [k for k, v in crit.items() if v["result"] == "unknown" and v.get("decided_by") != "person"]
    when = f" (from {out['passes_from']})" if out.get("passes_from") else ""
    short = out.get("cohort") == "out" and len(crit) == 1
    if short:
        failing = [f"{next(iter(crit))} (out of cohort)"]
    elif not failing and out["status"] == "ineligible":
        failing = [out.get("reason", "").split(" (")[0]]  # deceased
    line = (f"{out['patient'].removeprefix('Patient/'):<36} {out.get('mrn') or '-':<20} {out['status']:<20} "
            f"{','.join(failing) + when or '-':<28} {'(not evaluated)' if short else ','.join(open_) or '-'}")
    if "information" in out:
        info = "; ".join(v.get("summary", k) for k, v in out["information"].items())
        line = f"{line:<135} | {info}"
    elif information:
        line = f"{line:<135} | (not evaluated)"
    return line


def _csv_rows(study: Any, out: Any) -> Any:
    """Writes the header, then one CSV row a result on ``out`` (binary), with the report's columns and row builder:
    the same CSV as ``report --format csv``."""
    from fhir_adapter.report.render import SCREEN_CSV, CsvRows
    from fhir_adapter.report.screening import Shape, screen_row

    shape = Shape(study)
    return csv_writer(out, CsvRows, "screen", SCREEN_CSV, lambda result: screen_row(result, shape))


def run(args: argparse.Namespace) -> int:
    from fhir_adapter.sources.base import Early
    from fhir_adapter.studies.definition import find_study, load_study
    from fhir_adapter.studies.lookback import prefilter
    from fhir_adapter.studies.screen import out_of_cohort_by, screen, screen_entry
    from fhir_adapter.studies.unmapped import UnmappedTally

    as_of, defaulted = today_or(args.as_of)
    if args.randomization and args.randomization < as_of:
        raise ConfigError("--randomization is before --as-of (randomization follows screening)")
    study = load_study(args.study)
    if args.setting:
        study = study.with_settings(dict(args.setting))
    catalog = catalog_from_args(args)  # loaded once here; forked workers inherit it
    randomization = args.randomization or as_of
    skip = None if args.full_history else prefilter(study, catalog, as_of)
    horizon = None

    def one(record: Any) -> tuple[str, str, str | None, bytes, UnmappedTally | None, int]:
        """Runs in the workers: the patient id, status and the entry criterion that ruled the patient out (if
        one did) beside the JSON line, so the main process (which shares the cores with them) parses a result
        only when it needs all of it (table, write-back), and the patient's unmapped records (merged for the
        summary), and whether it has an MRN (``mrn_flag``)."""
        tally = UnmappedTally()
        result = screen(record, study, catalog, as_of, randomization, horizon, tally, all_criteria=args.all_criteria)
        return (record.patient_id, result["status"], out_of_cohort_by(result, study), orjson.dumps(result) + b"\n",
                tally or None, mrn_flag(result))

    def decide(record: Any) -> tuple[str, str, str | None, bytes, UnmappedTally | None, int] | None:
        """``one`` for a patient the entry criteria rule out, from the record's Patient, Conditions and
        Observations alone (a population screen then parses nothing else of theirs); None for the others."""
        tally = UnmappedTally()
        result = screen_entry(record, study, catalog, as_of, randomization, horizon, tally)
        if result is None:
            return None
        return (record.patient_id, result["status"], out_of_cohort_by(result, study), orjson.dumps(result) + b"\n",
                tally or None, mrn_flag(result))

    run_out = RunOutput.from_args(args, "screen", resumable=args.format == "jsonl" and not args.dry_run
                                   and args.only is None)
    quiet = args.quiet
    early = Early(study.entry_reads, decide) if study.entry and study.entry_reads and not args.all_criteria else None
    out = sys.stdout.buffer
    kinds = {c.id: c.kind for c in study.criteria}
    statuses: Counter[str] = Counter()
    out_by: Counter[str] = Counter()  # patients out of the entry cohort, by the criterion that ruled them out
    seen: set[str] = set()
    writer = open_writer(args)  # issue 6: None unless --write-back or --dry-run
    counts: Counter[str] = Counter()
    unmapped = UnmappedTally()
    with open_from_args(args) as source, run_out or nullcontext():
        if run_out is not None:
            out = run_out.begin(source, [find_study(args.study)])  # type: ignore[assignment]
            for result in run_out.previous:  # --resume: the patients done before the interruption
                seen.add(result["patient"].removeprefix("Patient/"))
                statuses[result["status"]] += 1
                if (ruled_out := out_of_cohort_by(result, study)):
                    out_by[ruled_out] += 1
            one, early = run_out.skip_done(one), early and Early(early.types, run_out.skip_done(early.decide, False))
        csv_rows = _csv_rows(study, out) if args.format == "csv" else None
        if args.format == "table":
            header = f"{'patient':<36} {'mrn':<20} {'status':<20} {'fails':<28} unknown (machine-decidable)"
            if study.information:
                header = f"{header:<135} | information (never affects the status)"
            out.write(f"{header}\n".encode())
        if skip is not None and source.prefilters:
            horizon = skip[1]  # read by ``one`` in the workers forked below
        else:
            skip = None
        progress = Progress("screen", estimate_patients(source, args.patient), quiet=quiet)
        for item in source.map_records(one, args.patient, early=early, prefilter=skip[0] if skip else None):
            progress.advance()
            if not item:  # --resume: done before
                continue
            pid, status, ruled_out, line, tally, mrn = item
            seen.add(pid)
            unmapped.merge(tally)
            statuses[status] += 1
            count_mrn(counts, mrn)
            if ruled_out:
                out_by[ruled_out] += 1
            shown = args.only is None or status in args.only
            result = orjson.loads(line) if writer is not None or (args.format != "jsonl" and shown) else None
            if writer is not None:
                from fhir_adapter.writeback.build import screening_resources

                outcome = writer.write(pid, screening_resources(result), study.id, follow_only=bool(ruled_out))
                report_write(outcome, out if args.dry_run else None, counts)
                counts["not_followed"] += outcome.not_followed
            if not args.dry_run and shown:
                if csv_rows is not None:
                    csv_rows(result)
                else:
                    out.write(line if args.format == "jsonl" else
                              (_table_line(result, kinds, bool(study.information)) + "\n").encode())
        progress.close()
        out.flush()
        n = sum(statuses.values())
        if not quiet:
            print_report(source.report, n)
    summary = ", ".join(f"{k} {v}" for k, v in sorted(statuses.items()))
    if not quiet:
        print(f"fhir-adapter: {study.id} as of {as_of}{defaulted}: {summary or 'no patients'}", file=sys.stderr)
        if args.only is not None:
            written = sum(n for k, n in statuses.items() if k in args.only)
            print(f"fhir-adapter: --only {','.join(sorted(args.only))}: {written:,} result line"
                  f"{'s' if written != 1 else ''} written (the counts above are of every patient)", file=sys.stderr)
    print_mrns(counts, catalog)
    if out_by and not quiet:
        by = ", ".join(f"{cid} {n:,}" for cid, n in sorted(out_by.items(), key=lambda kv: study.entry.index(kv[0])))
        how = "every criterion evaluated (--all-criteria)" if args.all_criteria else \
            "ineligible, no other criterion evaluated (--all-criteria evaluates them)"
        print(f"fhir-adapter: out of the entry cohort: {by}; {how}", file=sys.stderr)
    print_unmapped(unmapped, unmapped_command(args, study.id, as_of),
                   scope=(f"of patients out of the entry cohort, only {'/'.join(sorted(study.entry_reads))} "
                          "records are counted") if out_by and not args.all_criteria and study.entry_reads else None)
    if writer is not None and not quiet:
        print_write_summary(counts, args.dry_run)
        if counts["not_followed"]:
            print(f"fhir-adapter: write-back: {counts['not_followed']:,} patients out of the entry cohort and not "
                  "followed on the server: nothing written for them", file=sys.stderr)
    status = exit_status(source.report, args.patient, seen)
    status = 1 if counts["errors"] else status
    if run_out is not None:
        run_out.finish(status, {"patients": n, "status": dict(sorted(statuses.items())),
                                "out_of_entry_cohort_by": dict(sorted(out_by.items())),
                                **({"write_back": dict(sorted(counts.items()))} if writer is not None else {})},
                       source.report)
    return status
