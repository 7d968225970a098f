"""``fhir-adapter``: the command line. The only place that prints; the library raises and logs.

Each subcommand lives in its own module and is imported only when used, so reading NDJSON files imports no
HTTP client or web framework (start-up time counts in a population screen).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import re
import signal
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


QUIET_HELP = ("quiet: no progress, no summaries, no per-resource warnings; errors, unmapped codes and an incomplete "
              "run are still reported")
# environment variables read, per command (every one that reads FHIR data also reads SOURCE_ENV)
SOURCE_ENV = (
    ("FHIR_ADAPTER_SITE", "the site mappings file, when --site is not given"),
    ("FHIR_ADAPTER_TOKEN", "a static bearer token for a FHIR server, when --token is not given"),
    ("FHIR_ADAPTER_TOKEN_FILE", "a file holding the bearer token, when --token-file is not given"),
    ("FHIR_ADAPTER_SMART_CLIENT_ID", "SMART Backend Services client id (--smart-client-id)"),
    ("FHIR_ADAPTER_SMART_KEY", "SMART private key file (--smart-key)"),
    ("FHIR_ADAPTER_SMART_TOKEN_URL", "SMART token endpoint (--smart-token-url)"),
    ("FHIR_ADAPTER_MAX_LINE_BYTES", "the longest NDJSON line read (default 64M; K, M, G suffixes)"),
    ("FHIR_ADAPTER_MAX_BUNDLE_BYTES", "the largest Bundle file read (default 4G)"),
    ("FHIR_ADAPTER_PURE_PYTHON", "set (to anything): use the pure-Python line scanners, not the compiled ones"),
    ("FHIR_ADAPTER_SERVER_PLAN", "FHIR server sources: auto (default: Patient/$everything when the server offers "
                                 "it, else one search per type), everything, or searches"),
    ("FHIR_ADAPTER_PROGRESS_SECONDS", "seconds between two progress lines when standard error is not a terminal "
                                      "(default 5)"),
)
MAPPING_ENV = (
    ("FHIR_ADAPTER_CACHE", "folder of the validated mapping files cache (default: $XDG_CACHE_HOME/fhir-adapter, "
                           "else ~/.cache/fhir-adapter)"),
)
ENVIRONMENT = {
    "records": SOURCE_ENV + MAPPING_ENV,
    "screen": SOURCE_ENV + MAPPING_ENV,
    "response": SOURCE_ENV + MAPPING_ENV,
    "mappings": SOURCE_ENV + MAPPING_ENV,
    "load-sample": (),
    "report": MAPPING_ENV,
    "export": (("FHIR_ADAPTER_PSEUDONYM_KEY", "the pseudonym key, when --key-file is not given"),),
    "serve": (("FHIR_ADAPTER_CONFIG", "the settings file, when --config is not given"),
              ("FHIR_ADAPTER_<SETTING>", "any setting of the service (README 'Service'), e.g. FHIR_ADAPTER_FHIR_BASE"),
              ("FHIR_ADAPTER_ALLOW_INSECURE_HTTP", "true: as --allow-insecure-http (plain HTTP beyond loopback, "
                                                   "behind a TLS-terminating proxy)"),
              ("PROMETHEUS_MULTIPROC_DIR", "metrics shared by several worker processes"), *MAPPING_ENV),
}


def _epilog(command: str) -> str:
    """The environment variables ``command`` reads, then the exit statuses."""
    names = ENVIRONMENT.get(command, ())
    if not names:
        return EXIT_DOC
    width = max(len(n) for n, _ in names) + 2
    rows = "\n".join(f"  {n:<{width}}{what}" for n, what in names)
    return f"environment:\n{rows}\n\n{EXIT_DOC}"


def _plain(text: str) -> str:
    """A module docstring as --help shows it: without the ``literal`` markup of the source."""
    return re.sub(r"``([^`]+)``", r"\1", text).strip()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fhir-adapter", epilog=EXIT_DOC, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Pre-screen and follow anti-MDA5+ dermatomyositis trial patients from FHIR R4 data.\n\n"
                    "Output formats are named the same on every command: jsonl (one JSON object a line), json (one "
                    "JSON document), table (readable columns), csv, md (Markdown), html.\n\n"
                    "examples:\n"
                    "  fhir-adapter screen --study promis-mda5 --source sample --format table\n"
                    "  fhir-adapter screen --help")
    parser.add_argument("--version", action="version", version=f"fhir-adapter {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="also log progress and debug details")
    parser.add_argument("-q", "--quiet", action="store_true", help=QUIET_HELP)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        mod = importlib.import_module(f"fhir_adapter.cli.{module}")
        p = sub.add_parser(name, help=help_text, description=_plain(mod.__doc__ or help_text), epilog=_epilog(name),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(p)
        # also after the command (``fhir-adapter screen ... -q``); SUPPRESS keeps the one given before it
        p.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help=QUIET_HELP)
        p.set_defaults(run=mod.run)
    return parser


def _configure_logging(verbose: bool, quiet: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("fhir-adapter: %(levelname)s: %(message)s"))
    root = logging.getLogger("fhir_adapter")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.ERROR if quiet else logging.WARNING)
    root.propagate = False


def _stop_on_ctrl_c() -> None:
    """Ctrl-C stops the main process only (``KeyboardInterrupt``, exit 130): worker processes forked from it
    ignore it (no traceback from each) and are ended by their pool as the main process unwinds."""
    main_pid = os.getpid()

    def handler(signum: int, frame: object) -> None:
        if os.getpid() == main_pid:
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, handler)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(args.verbose, args.quiet)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        _stop_on_ctrl_c()
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
