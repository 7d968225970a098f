"""Reading result lines (``screen`` or ``response``) one at a time from files or standard input."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from fhir_adapter.errors import AdapterError

SCREEN, RESPONSE = "screen", "response"


@dataclass(frozen=True, slots=True)
class BadLine:
    """A line that is no result: where it is and why (the report goes on without it)."""

    where: str
    why: str

    def __str__(self) -> str:
        return f"{self.where}: {self.why}"


def kind_of(line: Any) -> str | None:
    """``screen`` (a status and criteria), ``response`` (TIS fields) or None."""
    if not isinstance(line, dict) or not isinstance(line.get("patient"), str):
        return None
    if isinstance(line.get("criteria"), dict) and isinstance(line.get("status"), str):
        return SCREEN
    if "tis_range" in line and isinstance(line.get("measures"), dict):
        return RESPONSE
    return None


def read_lines(names: list[str]) -> Iterator[tuple[str, int, dict[str, Any] | BadLine]]:
    """(file name, line number, the parsed result or why it is none) for every non-blank line, in order.
    ``-`` reads standard input. A file that cannot be opened raises ``AdapterError``."""
    for name in names:
        label = "<stdin>" if name == "-" else name
        try:
            f = sys.stdin.buffer if name == "-" else open(name, "rb")  # noqa: SIM115 (closed below)
        except OSError as exc:
            raise AdapterError(f"{name}: {exc.strerror}") from None
        try:
            for n, raw in enumerate(f, 1):
                if not raw.strip():
                    continue
                try:
                    line = orjson.loads(raw)
                except orjson.JSONDecodeError as exc:
                    yield label, n, BadLine(f"{label}:{n}", f"not JSON ({exc})")
                    continue
                if kind_of(line) is None:
                    yield label, n, BadLine(f"{label}:{n}", "not a result line of 'screen' or 'response' "
                                                            "(no patient with criteria and status, or TIS fields)")
                    continue
                yield label, n, line
        finally:
            if f is not sys.stdin.buffer:
                f.close()
