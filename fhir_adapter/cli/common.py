"""Options shared by every command that reads clinical data, and opening the source they name."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import date
from pathlib import Path
from typing import Any

from fhir_adapter.errors import ConfigError
from fhir_adapter.sources import Source, open_source
from fhir_adapter.sources.report import ReadReport


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("source")
    g.add_argument("--source", required=True, metavar="SOURCE",
                   help="'sample' (built-in synthetic population), a FHIR server base URL, a folder of Bulk Data "
                        "NDJSON files, an NDJSON file, or a FHIR Bundle file or folder of them")
    g.add_argument("--patient", action="append", metavar="ID", help="only this Patient id (repeatable)")
    g.add_argument("--workers", type=int, default=None,
                   help="worker processes for file sources (default: the number of cores)")
    g.add_argument("--export", action="store_true",
                   help="read a server through a Bulk Data $export (system level) instead of searches")
    g.add_argument("--export-group", metavar="ID",
                   help="read a server through a Group-level Bulk Data export (GET Group/ID/$export): only the "
                        "group's members; implies --export. Epic serves only Group-level export")
    g.add_argument("--since", type=fhir_instant, metavar="INSTANT",
                   help="with --export or --export-group: only resources changed since this instant (_since), "
                        "e.g. 2026-06-01T00:00:00+08:00 (a time zone is required)")
    g.add_argument("--concurrency", type=concurrency, default=4, metavar="N",
                   help="FHIR server sources: patients read at once, 1 to 32 (default: 4); fewer while the server "
                        "answers 429 or 503")
    add_site_argument(g)
    g.add_argument("--mrn-system", metavar="URI", default=None,
                   help="the Patient.identifier system of the hospital's medical record numbers: each result line's "
                        "'mrn' is that identifier's value (default: the site file's 'mrn_system', else the "
                        "identifier typed MR in HL7 v2 table 0203; null when there is none or several disagree)")
    a = parser.add_argument_group("server authentication (FHIR server sources)")
    a.add_argument("--token", default=os.environ.get("FHIR_ADAPTER_TOKEN"),
                   help="static bearer token (default: $FHIR_ADAPTER_TOKEN). Prefer --token-file: a token on the "
                        "command line is visible to other users of the machine")
    a.add_argument("--token-file", type=Path, metavar="FILE", default=os.environ.get("FHIR_ADAPTER_TOKEN_FILE"),
                   help="read the bearer token from FILE (surrounding white space ignored; read again when the "
                        "file changes, so a token renewed during a long run is used); wins over --token "
                        "(default: $FHIR_ADAPTER_TOKEN_FILE)")
    a.add_argument("--smart-client-id", default=os.environ.get("FHIR_ADAPTER_SMART_CLIENT_ID"),
                   help="SMART Backend Services client id (default: $FHIR_ADAPTER_SMART_CLIENT_ID); wins over "
                        "--token and --token-file")
    a.add_argument("--smart-key", type=Path, default=os.environ.get("FHIR_ADAPTER_SMART_KEY"),
                   help="PEM or JWK file with the private key that signs the client assertion "
                        "(default: $FHIR_ADAPTER_SMART_KEY)")
    a.add_argument("--smart-alg", choices=["RS384", "ES384"], default="RS384",
                   help="the key's signing algorithm (default: RS384)")
    a.add_argument("--smart-token-url", default=os.environ.get("FHIR_ADAPTER_SMART_TOKEN_URL"),
                   help="token endpoint (default: $FHIR_ADAPTER_SMART_TOKEN_URL, else from the server's "
                        ".well-known/smart-configuration)")
    a.add_argument("--smart-scope", default="system/*.read",
                   help="the scopes asked for (default: system/*.read)")


def add_site_argument(parser: Any, required: bool = False) -> None:
    """``--site FILE``: the hospital's site mappings (local codes, units), on top of the package catalog."""
    parser.add_argument("--site", type=Path, required=required, metavar="FILE",
                        default=None if required else os.environ.get("FHIR_ADAPTER_SITE"),
                        help="site mappings JSON file: local codes, code-system aliases, unit strings (see README "
                             "'Site mappings'; default: $FHIR_ADAPTER_SITE)")


def concurrency(text: str) -> int:
    """An argparse type: the patients a server source reads at once."""
    from fhir_adapter.sources.server import MAX_CONCURRENCY

    try:
        n = int(text)
    except ValueError:
        n = 0
    if not 1 <= n <= MAX_CONCURRENCY:
        raise argparse.ArgumentTypeError(f"not a whole number from 1 to {MAX_CONCURRENCY}: {text!r}")
    return n


def iso_date(text: str) -> date:
    """An argparse type: a YYYY-MM-DD date, or a usage error that shows what was typed."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def fhir_instant(text: str) -> str:
    """An argparse type: a FHIR instant (date, time and time zone), as the server is to get it in ``_since``."""
    from datetime import datetime

    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an instant (YYYY-MM-DDThh:mm:ss+zz:zz): {text!r}") from None
    if moment.tzinfo is None or "T" not in text:
        raise argparse.ArgumentTypeError(f"{text!r}: give the time and the time zone, e.g. {text[:10]}T00:00:00Z "
                                         "or +08:00 (a FHIR instant; the adapter does not guess the zone)")
    return text


def today_or(day: date | None) -> tuple[date, str]:
    """``--as-of`` as given, or today (the default, for scheduled runs), with how it was chosen for the summary."""
    return (day, "") if day is not None else (date.today(), " (today: no --as-of given)")


def site_file(args: argparse.Namespace) -> Path | None:
    """The site file: ``--site``, or for ``--source sample`` the sample's own (its local codes come with it)."""
    if getattr(args, "site", None):
        return Path(args.site)
    if getattr(args, "source", None) == "sample":
        from fhir_adapter.paths import sample_dir

        site = sample_dir().parent / "site-mappings.json"
        if not getattr(args, "quiet", False):
            print(f"fhir-adapter: using the sample's site mappings ({site.name})", file=sys.stderr)
        return site
    return None


def catalog_from_args(args: argparse.Namespace) -> Any:
    """The concept catalog, with the site file (``site_file``) merged on top."""
    from fhir_adapter.terminology.catalog import Catalog

    return Catalog.load(site_file(args)).with_mrn_system(getattr(args, "mrn_system", None))


def server_auth(args: argparse.Namespace) -> Any:
    """The requests auth object the options ask for, or None."""
    if args.smart_client_id:
        if not args.smart_key:
            raise ConfigError("--smart-client-id needs --smart-key (the private key file)")
        from fhir_adapter.client.auth import SmartBackendAuth

        key = Path(args.smart_key).read_bytes()
        return SmartBackendAuth(args.smart_token_url, args.smart_client_id, key, alg=args.smart_alg,
                                scope=args.smart_scope)
    if getattr(args, "token_file", None):
        from fhir_adapter.client.auth import TokenFile

        return TokenFile(Path(args.token_file))
    if args.token:
        from fhir_adapter.client.auth import BearerToken

        return BearerToken(args.token)
    return None


def open_from_args(args: argparse.Namespace) -> Source:
    """The source ``--source`` names, with the server's auth or the file workers the options ask for (in Spark with
    ``--engine spark``)."""
    if getattr(args, "engine", "local") == "spark":
        from fhir_adapter.cli.engine import spark_source

        return spark_source(args)
    group, since = getattr(args, "export_group", None), getattr(args, "since", None)
    server = args.source.startswith(("http://", "https://"))
    if (group or since) and not server:
        raise ConfigError("--export-group and --since read a FHIR server: give its base URL as --source")
    if since and not (group or args.export):
        raise ConfigError("--since works with a Bulk Data export: add --export or --export-group ID")
    if server:
        options: dict[str, Any] = {"auth": server_auth(args), "export": bool(args.export or group)}
        if group:
            options["level"] = f"Group/{group}"
        if since:
            options["since"] = since
        if args.workers and options["export"]:
            options["workers"] = args.workers
        if not options["export"]:
            options["concurrency"] = args.concurrency
        return open_source(args.source, **options)
    return open_source(args.source, **({"workers": args.workers} if args.workers else {}))


def parse_only(text: str, allowed: tuple[str, ...], what: str) -> frozenset[str]:
    """``--only a,b``: the values, each one of ``allowed``; a usage error names any other."""
    values = [v.strip() for v in text.split(",") if v.strip()]
    wrong = [v for v in values if v not in allowed]
    if wrong or not values:
        raise argparse.ArgumentTypeError(f"--only: {', '.join(wrong) or 'nothing given'}: not a {what} "
                                         f"(one or more of {', '.join(allowed)}, comma-separated)")
    return frozenset(values)


def csv_writer(out: Any, rows_class: Any, kind: str, columns: tuple[str, ...], row: Any) -> Any:
    """A function writing one result as a CSV row on ``out`` (binary; standard output), the header first even
    when no row follows: ``rows_class`` (``report.render.CsvRows``) and ``row`` (the report's row builder) make
    the same CSV as ``report --format csv``."""
    import io

    buffer = io.StringIO(newline="")
    rows = rows_class(buffer)
    rows.header = columns
    rows.writer.writerow(columns)

    def write(result: dict[str, Any]) -> None:
        if result is not None:
            rows(kind, row(result))
        out.write(buffer.getvalue().encode())
        buffer.seek(0)
        buffer.truncate()

    write(None)  # type: ignore[arg-type]  # the header
    return write


def mrn_flag(result: dict[str, Any]) -> int:
    """0: the result line has an MRN; 1: none; 2: none because several disagree (``mrn_note``). Computed in the
    workers, so that the main process need not parse the line to count them."""
    return 0 if result.get("mrn") is not None else 2 if "mrn_note" in result else 1


def count_mrn(counts: Any, flag: int) -> None:
    counts["no_mrn"] += flag > 0
    counts["mrn_conflict"] += flag == 2


def print_mrns(counts: Any, catalog: Any) -> None:
    """The summary line of the patients without an MRN (and how the MRN was looked for), when there are any."""
    if not counts["no_mrn"]:
        return
    n = counts["no_mrn"]
    how = f"no Patient.identifier of system {catalog.mrn_system}" if catalog.mrn_system else \
        "no Patient.identifier typed MR (name the hospital's MRN system: --mrn-system or the site file's mrn_system)"
    conflict = f"; {counts['mrn_conflict']:,} with several that disagree (see mrn_note)" if counts["mrn_conflict"] \
        else ""
    print(f"fhir-adapter: no MRN: {n:,} patient{'s' if n != 1 else ''} ('mrn' is null): {how}{conflict}",
          file=sys.stderr)


def print_report(report: ReadReport, patients: int) -> None:
    """The end-of-run summary, on standard error."""
    print(f"fhir-adapter: {patients:,} patient record{'' if patients == 1 else 's'}", file=sys.stderr)
    for line in report.summary_lines():
        print(f"fhir-adapter: {line}", file=sys.stderr)


def missing_patients(requested: list[str] | None, seen: set[str], report: ReadReport | None = None) -> int:
    """Say what became of each ``--patient`` that got no result of its own; the exit status: 1 when one is not
    in the source, else 3 when one is in the source but could not be read (``report``), else 0 (each got a
    result: its own or, merged into the Patient that replaced it, that one's)."""
    report = report or ReadReport()
    absent = unread = False
    for pid in requested or ():
        if pid in seen:
            continue
        survivor = report.merged.get(pid)
        if survivor is not None and survivor in seen:
            print(f"fhir-adapter: patient {pid!r} was merged into Patient/{survivor} (Patient.link): its result is "
                  f"the one of {survivor!r}, read from both records", file=sys.stderr)
        elif pid in report.not_read_ids or survivor in report.not_read_ids:
            print(f"fhir-adapter: error: patient {pid!r} is in the source but could not be read, so it has no "
                  "result (why: above)", file=sys.stderr)
            unread = True
        elif report.not_read_unnamed or report.not_read_ids_full:
            print(f"fhir-adapter: error: no record for patient {pid!r} in what could be read; the source could not "
                  "be read whole, so it may be among the patients not read", file=sys.stderr)
            unread = True
        else:
            print(f"fhir-adapter: error: no record for patient {pid!r} in the source", file=sys.stderr)
            absent = True
    return 1 if absent else 3 if unread else 0


def exit_status(report: ReadReport, requested: list[str] | None, seen: set[str]) -> int:
    """The exit status of a command that read a source (``EXIT_DOC``): 1 when a ``--patient`` asked for is not in
    the source or nothing at all could be read, 3 when some patients could not be read whole (the run is
    incomplete: a scheduler must not take it for a success; a ``--patient`` asked for among them too), else 0.
    A ``--patient`` merged into another Patient (Patient.link) got that one's result."""
    status = missing_patients(requested, seen, report)
    if status == 1:
        return status
    if report.patients_not_read:
        print(f"fhir-adapter: error: incomplete: {report.patients_not_read:,} patient"
              f"{'s' if report.patients_not_read != 1 else ''} not read ({len(seen):,} got a result)", file=sys.stderr)
        return 1 if not seen and not requested else 3
    return status


def add_writeback_arguments(parser: argparse.ArgumentParser) -> None:
    """``--write-back``, ``--dry-run``, ``--target`` (issue 6)."""
    w = parser.add_argument_group("write-back")
    w.add_argument("--write-back", action="store_true",
                   help="write the results to the FHIR server (the source, or --target) as ResearchSubject and "
                        "Observation resources, one transaction per patient")
    w.add_argument("--dry-run", action="store_true",
                   help="with --write-back: print each patient's transaction Bundle (JSON lines) instead of sending it")
    w.add_argument("--target", metavar="URL", help="the FHIR server to write to (default: the --source server)")


def open_writer(args: argparse.Namespace) -> Any:
    """The ``WriteBack`` the options ask for, or None without --write-back/--dry-run. Imports the HTTP client only
    when asked."""
    if not (args.write_back or args.dry_run):
        return None
    target = args.target or (args.source if args.source.startswith(("http://", "https://")) else None)
    if not target:
        raise ConfigError("--write-back needs a FHIR server: a server --source, or --target URL")
    from fhir_adapter.client import FhirClient
    from fhir_adapter.writeback.write import WriteBack

    return WriteBack(FhirClient(target, auth=server_auth(args)), dry_run=args.dry_run)


def report_write(outcome: Any, out: Any, counts: dict[str, int]) -> None:
    """One patient's write-back: the Bundle on ``out`` in a dry run, conflicts and errors on standard error."""
    import orjson

    if outcome.bundle is not None and outcome.error is None and out is not None:
        out.write(orjson.dumps(outcome.bundle) + b"\n")
    for conflict in outcome.conflicts:
        print(f"fhir-adapter: conflict: {conflict}", file=sys.stderr)
    if outcome.error:
        print(f"fhir-adapter: error: patient {outcome.patient}: not written: {outcome.error}", file=sys.stderr)
    counts["errors"] += bool(outcome.error)
    counts["conflicts"] += len(outcome.conflicts)
    counts["written"] += len(outcome.written) if not outcome.error else 0
    counts["unchanged"] += len(outcome.unchanged)


def print_write_summary(counts: dict[str, int], dry_run: bool) -> None:
    verb = "would write" if dry_run else "wrote"
    print(f"fhir-adapter: write-back: {verb} {counts['written']:,} resources, {counts['unchanged']:,} unchanged, "
          f"{counts['conflicts']:,} conflicts, {counts['errors']:,} patients not written", file=sys.stderr)


def unmapped_command(args: argparse.Namespace, study: str | None = None, as_of: date | None = None) -> str:
    """The ``mappings unmapped`` command that lists this run's unmapped codes, ranked by the results they affect."""
    parts = ["fhir-adapter mappings unmapped", f"--source {args.source}"]
    if getattr(args, "site", None):
        parts.append(f"--site {args.site}")
    if study:
        parts.append(f"--study {study}")
    if as_of:
        parts.append(f"--as-of {as_of.isoformat()}")
    return " ".join(parts)


def print_unmapped(tally: Any, command: str, affected: str | None = None, scope: str | None = None) -> None:
    """The summary lines (standard error) of the records whose codes map to nothing (``UnmappedTally``): per
    resource type the records and distinct codes (``scope``: what was not counted), what possible matches made
    unknown (``affected`` overrides the criterion-result line), and the command that lists them."""
    by_type = tally.by_type()
    if not by_type and not tally.turned:
        return
    n = sum(r for r, _ in by_type.values())
    codes = len({(s, c) for _, s, c in tally.records})
    rows = ", ".join(f"{t} {r:,} ({k:,} code{'s' if k != 1 else ''})" for t, (r, k) in by_type.items())
    print(f"fhir-adapter: codes that map to no concept: {n:,} record{'s' if n != 1 else ''} with {codes:,} distinct "
          f"code{'s' if codes != 1 else ''}: {rows}" + (f" ({scope})" if scope else ""), file=sys.stderr)
    if affected:
        print(f"fhir-adapter: possible matches: {affected}", file=sys.stderr)
    elif tally.turned or tally.affected:
        k = len(tally.affected)
        one = tally.turned == 1
        print(f"fhir-adapter: possible matches: {tally.turned:,} criterion result{'' if one else 's'} unknown "
              f"because a record whose code maps to nothing may be what {'it looks' if one else 'they look'} for; "
              f"{k:,} code{'s' if k != 1 else ''} to map or ignore", file=sys.stderr)
    print(f"fhir-adapter: list them, most results affected first: {command}", file=sys.stderr)
