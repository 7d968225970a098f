"""``fhir-adapter``: the command line. The only place that prints; the library raises and logs.

Each subcommand lives in its own module and is imported only when used, so reading NDJSON files imports no
HTTP client or web framework (start-up time counts in a population screen).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from fhir_adapter import __version__
from fhir_adapter.errors import AdapterError

# subcommand -> (module under fhir_adapter.cli, one-line help)
COMMANDS = {
    "records": ("records", "gather each patient's record from a source and print what it holds"),
    "screen": ("screen", "pre-screen patients for a study: every criterion met / not-met / unknown, and a status"),
    "load-sample": ("load_sample", "load the built-in synthetic sample population into a FHIR server"),
    "response": ("response", "treatment response per patient: TIS, inactive disease, endpoints, safety signals"),
    "report": ("report", "a report for the investigator (HTML, CSV, Markdown, JSON) from screen or response lines"),
    "export": ("export", "pseudonymised FHIR data for a sponsor, as a folder with a manifest, from screen or response"),
    "reidentify": ("reidentify", "for the hospital only: the patient behind a Patient pseudonym of a sponsor export"),
    "mappings": ("mappings", "check site mappings, list the concepts a site can map to, find unmapped codes and units"),
    "serve": ("serve", "run as an HTTP service for integration engines: evaluate, results feed, jobs, metrics"),
}

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INCOMPLETE = 0, 1, 2, 3
EXIT_DOC = """exit status:
  0    every patient the source holds got a result (skipped resources are counted on standard error)
  1    error: the source, the study or a setting could not be read, nothing could be read, a --patient
       asked for is not in the source, or a write-back or export failed for some patient
  2    usage error (a wrong option)
  3    incomplete: some patients could not be read whole (a server that kept failing, a file cut short)
       and got no result, a --patient asked for among them; the others did. Standard error says how many
       and why. (A --patient merged into another Patient gets the survivor's result, with status 0.)
  130  interrupted"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fhir-adapter", epilog=EXIT_DOC, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Pre-screen and follow anti-MDA5+ dermatomyositis trial patients from FHIR R4 data.")
    parser.add_argument("--version", action="version", version=f"fhir-adapter {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="also log progress and debug details")
    parser.add_argument("-q", "--quiet", action="store_true", help="log errors only (no per-resource warnings)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        mod = importlib.import_module(f"fhir_adapter.cli.{module}")
        p = sub.add_parser(name, help=help_text, description=(mod.__doc__ or help_text).strip(), epilog=EXIT_DOC,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(run=mod.run)
    return parser


def _configure_logging(verbose: bool, quiet: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("fhir-adapter: %(levelname)s: %(message)s"))
    root = logging.getLogger("fhir_adapter")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.ERROR if quiet else logging.WARNING)
    root.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(args.verbose, args.quiet)
    try:
        return int(args.run(args) or EXIT_OK)
    except AdapterError as e:
        print(f"fhir-adapter: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("fhir-adapter: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. piped into head
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
