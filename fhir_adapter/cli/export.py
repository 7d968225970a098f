"""Pseudonymised FHIR Bundles for a sponsor, from the result lines of ``screen`` or ``response``.

Each result line becomes one Bundle (type collection, one JSON line): the ResearchSubject and screening
Observation, or the response Observations, with a Provenance. Patient and source ids become keyed
pseudonyms, dates move by a per-patient offset, and free text is removed unless asked for (README "Export for
sponsors"). A line that cannot be exported is named on standard error and skipped; the others are exported,
and the exit status is then 1. With ``--out`` the file appears only when the export is complete.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import orjson

from fhir_adapter.errors import AdapterError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", nargs="*", default=["-"], metavar="RESULTS",
                        help="files of result lines from 'screen' or 'response' (default: standard input, '-')")
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
    parser.add_argument("--out", type=Path, metavar="FILE",
                        help="write the Bundles to FILE, which appears only when the export is complete "
                             "(default: standard output)")


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


def _export(args: argparse.Namespace, out: IO[bytes], counts: Counter[str]) -> None:
    from fhir_adapter.export.bundles import kind_of, sponsor_bundle
    from fhir_adapter.export.deidentify import Pseudonymizer, read_key

    pseudonymizer = Pseudonymizer(read_key(args.key_file, os.environ.get), dates=args.dates,
                                  free_text=args.free_text, max_shift_days=args.max_shift_days)
    from fhir_adapter.cli.progress import Progress, counted

    for name, n, line in counted(_lines(args.results), Progress("export", unit="lines", quiet=args.quiet)):
        if not line.strip():
            continue
        try:
            result: Any = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            why = f"not JSON ({exc})"
        else:
            try:
                out.write(orjson.dumps(sponsor_bundle(result, pseudonymizer)) + b"\n")
                counts[kind_of(result)] += 1
                continue
            except AdapterError as exc:
                why = str(exc)
            except (KeyError, TypeError, ValueError) as exc:  # a result line with a wrong shape
                why = f"malformed result ({type(exc).__name__}: {exc})"
        print(f"fhir-adapter: error: {name} line {n}: {why}; skipped", file=sys.stderr)
        counts["skipped"] += 1


def run(args: argparse.Namespace) -> int:
    counts: Counter[str] = Counter()
    if args.out is None:
        _export(args, sys.stdout.buffer, counts)
        sys.stdout.flush()
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{args.out.name}.", dir=args.out.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                _export(args, f, counts)
            os.replace(tmp, args.out)
        except BaseException:
            os.unlink(tmp)
            raise
    kinds = ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items()) if k != "skipped") or "none"
    dates = f"dates shifted by up to {args.max_shift_days} days" if args.dates == "shift" else "real dates kept"
    text = "free text removed" if args.free_text == "drop" else "free text kept"
    n = sum(v for k, v in counts.items() if k != "skipped")
    if args.quiet and not counts["skipped"]:
        return 0
    print(f"fhir-adapter: export: {n:,} Bundle{'' if n == 1 else 's'} ({kinds}), "
          f"{counts['skipped']:,} skipped; pseudonymised; {dates}; {text}", file=sys.stderr)
    return 1 if counts["skipped"] else 0
