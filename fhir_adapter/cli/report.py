"""A report for the investigator from the result lines of ``screen`` or ``response``.

HTML (one self-contained file: no network needed, printable, readable on a phone): status counts, the
screening funnel, per criterion met / not met / unknown (machine) / unknown (person), what would resolve the
unknowns, the worklist of candidates and potential candidates (each criterion's reason and evidence one click
away), when failing patients would pass, and the settings used; for response lines the TIS classes, per
measure changes, inactive disease and endpoint changes. Markdown and JSON hold the same counts; CSV is one row
per patient. The lines are read once, as they stream: memory holds counts and the worklist, not the lines.

examples:
  fhir-adapter screen --study NCT07377058 --source sample --as-of 2026-06-30 > screen.jsonl
  fhir-adapter report screen.jsonl --out report.html
  fhir-adapter report screen.jsonl --out report.csv                      # one row per patient
  fhir-adapter report screen.jsonl --out share.html --shareable          # for outside the care team
  fhir-adapter report screen.jsonl --compare last-month.jsonl --out report.html
  fhir-adapter screen ... | fhir-adapter report - --format md --out -
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from fhir_adapter.errors import AdapterError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", nargs="+", metavar="RESULTS",
                        help="files of result lines from 'screen' or 'response' ('-': standard input)")
    parser.add_argument("--out", required=True, metavar="FILE",
                        help="the report file ('-': standard output); it appears only when complete")
    parser.add_argument("--format", choices=["html", "csv", "md", "json"],
                        help="default: from the extension of --out (.html, .csv, .md, .json)")
    parser.add_argument("--shareable", action="store_true",
                        help="for sharing outside the care team: no patient ids, MRNs, ages, dates of birth or "
                             "per-patient reasons, and small counts hidden with complementary suppression "
                             "(not with --format csv)")
    parser.add_argument("--suppress-below", type=int, default=11, metavar="N",
                        help="with --shareable: counts from 1 to N-1 show as '<N' (default: 11)")
    parser.add_argument("--compare", action="append", default=[], metavar="PREVIOUS",
                        help="an earlier run's screen lines: report new candidates, status changes and "
                             "'passes from' dates now reached (repeatable)")
    parser.add_argument("--study", action="append", default=[], metavar="FILE",
                        help="the study file of lines whose study is not built in (repeatable)")
    parser.add_argument("--worklist-max", type=int, default=500, metavar="N",
                        help="patients listed per worklist (candidates, potential candidates, passes-from, "
                             "changes; default: 500); the CSV lists every patient")


def _format(args: argparse.Namespace) -> str:
    if args.format:
        return str(args.format)
    ext = Path(args.out).suffix.lower().lstrip(".")
    fmt = {"htm": "html", "markdown": "md"}.get(ext, ext)
    if fmt not in ("html", "csv", "md", "json"):
        raise SystemExit("fhir-adapter report: error: name the format: --format html|csv|md|json "
                         f"(no known extension in --out {args.out})")
    return fmt


def run(args: argparse.Namespace) -> int:
    from fhir_adapter.report.build import Options, build, shareable
    from fhir_adapter.report.lines import BadLine
    from fhir_adapter.report.render import CsvRows, render_html, render_json, render_md

    fmt = _format(args)
    if args.shareable and fmt == "csv":
        print("fhir-adapter report: error: a CSV is one row per patient and cannot be shareable; use --format "
              "html, md or json", file=sys.stderr)
        return 2
    if args.suppress_below < 1 or args.worklist_max < 0:
        print("fhir-adapter report: error: --suppress-below must be 1 or more, --worklist-max 0 or more",
              file=sys.stderr)
        return 2
    if args.results.count("-") + args.compare.count("-") > 1:
        print("fhir-adapter report: error: standard input ('-') can be read only once", file=sys.stderr)
        return 2
    bad: list[BadLine] = []
    options = Options(limit=args.worklist_max, compare=args.compare, study_files=args.study)
    with _Output(args.out, text=fmt != "json") as out:
        rows = CsvRows(out) if fmt == "csv" else None  # type: ignore[arg-type]
        try:
            summary = build(args.results, options, row=rows, bad=bad)
        except ValueError as exc:  # screen and response rows in one CSV
            raise AdapterError(str(exc)) from None
        if args.shareable:
            summary = shareable(summary, args.suppress_below)
        if fmt == "html":
            out.write(render_html(summary))
        elif fmt == "md":
            out.write(render_md(summary))
        elif fmt == "json":
            out.write(render_json(summary))
    for b in bad[:20]:
        print(f"fhir-adapter: {b}", file=sys.stderr)
    if len(bad) > 20:
        print(f"fhir-adapter: ... and {len(bad) - 20} more lines that are no result", file=sys.stderr)
    counts = []
    for sec in summary["sections"]:
        if sec["kind"] == "screen":
            counts.append(f"{sec['study']}: {_n(sec['population'])} screened, candidate {sec['status']['candidate']}, "
                          f"potential-candidate {sec['status']['potential-candidate']}, "
                          f"ineligible {sec['status']['ineligible']}")
        else:
            counts.append(f"{sec['study']}: {_n(sec['scored'])} scored for response")
    where = "standard output" if args.out == "-" else args.out
    print(f"fhir-adapter: report ({fmt}) written to {where}: " + ("; ".join(counts) or "no result lines"),
          file=sys.stderr)
    if bad:
        print(f"fhir-adapter: {len(bad)} line(s) could not be read and are not counted", file=sys.stderr)
        return 3
    return 0 if summary["lines"] else 1


class _Output:
    """The report file, written beside its final name and renamed into place only when complete."""

    def __init__(self, name: str, text: bool) -> None:
        self.name, self.text = name, text
        self.tmp: str | None = None

    def __enter__(self):  # type: ignore[no-untyped-def]
        if self.name == "-":
            self.f = sys.stdout if self.text else sys.stdout.buffer
            return self.f
        target = Path(self.name)
        fd, self.tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent or ".")
        self.f = os.fdopen(fd, "w", encoding="utf-8", newline="") if self.text else os.fdopen(fd, "wb")
        return self.f

    def __exit__(self, exc_type, exc, tb) -> None:  # type: ignore[no-untyped-def]
        if self.name == "-":
            self.f.flush()
            return
        self.f.close()
        if exc_type is None:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(self.tmp, 0o666 & ~umask)  # type: ignore[arg-type]  # mkstemp made it private
            os.replace(self.tmp, self.name)  # type: ignore[arg-type]
        else:
            os.unlink(self.tmp)  # type: ignore[arg-type]


def _n(count: object) -> str:
    """A count for people: "1,234", or as a shareable report shows it ("<11", "hidden")."""
    return f"{count:,}" if isinstance(count, int) else str(count)
