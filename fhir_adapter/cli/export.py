"""Pseudonymised FHIR data for a sponsor, from the result lines of ``screen`` or ``response``, as a folder.

  fhir-adapter export RESULTS... --key-file KEY --out FOLDER [--only STATUS,...] [--study STUDY] [--layout bulk]

Each selected result becomes one Bundle (type collection): the ResearchSubject and screening Observation, or the
response Observations, with a Provenance. Patient and source ids become keyed pseudonyms, dates move by a
per-patient offset, and free text is removed unless asked for (README "Export for sponsors"). Only the statuses
``--only`` names are exported (default: candidate, potential-candidate; a response result's status is
``response``). The folder holds Bundle.ndjson (or, with ``--layout bulk``, one Bulk NDJSON file per resource
type), README.txt and manifest.json (files and their sha256, counts, the key's fingerprint, versions and
settings), written last: the folder appears only when the export is complete. A line that cannot be exported
is named on standard error and skipped; the others are exported (the manifest counts the skipped), and the
exit status is then 1.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from fhir_adapter.errors import AdapterError

STATUSES = ("candidate", "potential-candidate", "ineligible", "response")
DEFAULT_ONLY = ("candidate", "potential-candidate")


def _statuses(text: str) -> tuple[str, ...]:
    wanted = tuple(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))
    bad = [s for s in wanted if s not in STATUSES]
    if bad or not wanted:
        raise argparse.ArgumentTypeError(f"{', '.join(bad) or repr(text)}: not a status to export "
                                         f"(choose among {', '.join(STATUSES)})")
    return wanted


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", nargs="*", default=["-"], metavar="RESULTS",
                        help="files of result lines from 'screen' or 'response' (default: standard input, '-')")
    parser.add_argument("--out", type=Path, required=True, metavar="FOLDER",
                        help="the export folder; it appears only when the export is complete, with manifest.json. "
                             "A folder that exists and is not empty is refused unless --force")
    parser.add_argument("--force", action="store_true",
                        help="replace a non-empty --out folder (only once the new export is complete)")
    parser.add_argument("--only", type=_statuses, default=DEFAULT_ONLY, metavar="STATUS,...",
                        help=f"export only results of these statuses, among {', '.join(STATUSES)} (a response "
                             f"result's status is 'response'; default: {','.join(DEFAULT_ONLY)})")
    parser.add_argument("--study", metavar="STUDY",
                        help="export only results of this study (NCT id or alias; default: every study)")
    parser.add_argument("--layout", choices=["bundles", "bulk"], default="bundles",
                        help="bundles (default): Bundle.ndjson, one Bundle per result; bulk: FHIR Bulk Data NDJSON, "
                             "one file per resource type (Observation.ndjson, ...)")
    parser.add_argument("--key-file", type=Path, metavar="FILE",
                        help="the pseudonym key (at least 32 bytes; default: $FHIR_ADAPTER_PSEUDONYM_KEY). The same "
                             "key gives the same pseudonyms and date offsets in every export: keep it at the hospital")
    parser.add_argument("--dates", choices=["shift", "keep"], default="shift",
                        help="shift every date by the patient's offset (default), or keep real dates (a limited "
                             "data set, under a data use agreement)")
    parser.add_argument("--max-shift-days", type=int, default=182, metavar="N",
                        help="the largest offset, either way (default: 182)")
    parser.add_argument("--free-text", choices=["drop", "keep"], default="drop",
                        help="remove every reason text (default: they quote source texts), or keep them with "
                             "dates shifted, references pseudonymised and ages of 90 and over grouped")


def _lines(names: list[str]) -> Iterator[tuple[str, int, bytes]]:
    for name in names:
        if name == "-":
            for n, line in enumerate(sys.stdin.buffer, 1):
                yield "<stdin>", n, line
            continue
        try:
            with open(name, "rb") as f:
                for n, line in enumerate(f, 1):
                    yield name, n, line
        except OSError as exc:
            raise AdapterError(f"{name}: {exc.strerror}") from None


def status_of(result: dict[str, Any], kind: str) -> str:
    """What ``--only`` selects on: a screening result's status, ``response`` for a response result."""
    return str(result["status"]) if kind == "screening" else "response"


def _export(args: argparse.Namespace, folder: Any, pseudonymizer: Any, study: str | None,
            left: Counter[str]) -> None:
    from fhir_adapter.cli.progress import Progress, counted
    from fhir_adapter.export.bundles import kind_of, sponsor_bundle

    for name, n, line in counted(_lines(args.results), Progress("export", unit="lines", quiet=args.quiet)):
        if not line.strip():
            continue
        try:
            result: Any = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            why = f"not JSON ({exc})"
        else:
            try:
                kind = kind_of(result)
                status = status_of(result, kind)
                if study is not None and result["study"] != study:
                    left[f"study {result['study']}"] += 1
                    continue
                if status not in args.only:
                    left[f"status {status}"] += 1
                    continue
                folder.add(sponsor_bundle(result, pseudonymizer), kind, status, str(result["study"]))
                continue
            except AdapterError as exc:
                why = str(exc)
            except (KeyError, TypeError, ValueError) as exc:  # a result line with a wrong shape
                why = f"malformed result ({type(exc).__name__}: {exc})"
        print(f"fhir-adapter: error: {name} line {n}: {why}; skipped", file=sys.stderr)
        left["errors"] += 1


def run(args: argparse.Namespace) -> int:
    from fhir_adapter.export.deidentify import Pseudonymizer, read_key
    from fhir_adapter.export.folder import ExportFolder

    study = None
    if args.study:
        from fhir_adapter.studies.definition import load_study

        study = load_study(args.study).id
    pseudonymizer = Pseudonymizer(read_key(args.key_file, os.environ.get), dates=args.dates,
                                  free_text=args.free_text, max_shift_days=args.max_shift_days)
    left: Counter[str] = Counter()
    with ExportFolder(args.out, args.layout, force=args.force) as folder:
        _export(args, folder, pseudonymizer, study, left)
        selection = {"only": list(args.only), "study": study}
        doc = folder.finish(pseudonymizer, selection, dict(sorted(left.items())))
    results = doc["counts"]["results"]
    kinds = ", ".join(f"{k} {sum(v.values()):,} ({', '.join(f'{s} {n:,}' for s, n in v.items())})"
                      for k, v in sorted(results.items())) or "none"
    n = doc["counts"]["bundles"]
    dates = f"dates shifted by up to {args.max_shift_days} days" if args.dates == "shift" else "real dates kept"
    text = "free text removed" if args.free_text == "drop" else "free text kept"
    if args.quiet and not left["errors"]:
        return 0
    print(f"fhir-adapter: export: {n:,} Bundle{'' if n == 1 else 's'} ({kinds}), {left['errors']:,} skipped; "
          f"pseudonymised; {dates}; {text}", file=sys.stderr)
    if not_selected := {k: v for k, v in left.items() if k != "errors"}:
        print(f"fhir-adapter: not exported (--only {','.join(args.only)}"
              f"{f', --study {study}' if study else ''}): "
              + ", ".join(f"{k} {v:,}" for k, v in sorted(not_selected.items())), file=sys.stderr)
    print(f"fhir-adapter: export folder {args.out}: {len(doc['files'])} files and manifest.json; key fingerprint "
          f"{doc['deidentification']['key_fingerprint']}", file=sys.stderr)
    return 1 if left["errors"] else 0
