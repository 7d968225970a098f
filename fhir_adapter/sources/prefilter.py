"""Skip, before parsing, the Observation lines of a Bulk Data file that no criterion will read.

A lab panel repeated over years makes most of a population's bytes, and a screen reads each lab only in a
look-back before the screening date. Parsing a line costs about 4 µs; finding its date and code on the raw
bytes costs a fraction of that. So pass 1 of the population path (``partition``) asks ``skips(line)`` of each
Observation line and drops the line when its ``effectiveDateTime`` is before the first date any criterion reads
for the concepts its ``code`` maps to.

Whatever this cannot read with certainty is kept: a line without ``effectiveDateTime``, a partial date, a
``code`` not in the compact form ``"code":{"coding":[...]``, a coding list that does not parse, a ``contained``
resource, a ``component`` before the code. The decision per distinct coding list is made once, by the caller's
``first_read`` (the concept catalog and the study's look-backs: ``studies.lookback``), and cached.

``kept(buf)`` applies ``skips`` to a whole buffer of lines. Where the compiled scanner (``_linescan.c``, built
by ``pip install``) is present, it makes the same checks on the raw buffer without a Python object per line,
using only the decisions already cached, and hands back the lines whose coding list is new: 0.6 to 0.7 µs a
line against 2.7 µs for the Python loop (``benchmarks/linescan.py``), which runs instead where it was not
built (or with ``FHIR_ADAPTER_PURE_PYTHON=1``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

import orjson

try:
    if os.environ.get("FHIR_ADAPTER_PURE_PYTHON"):
        raise ImportError("FHIR_ADAPTER_PURE_PYTHON is set")
    from fhir_adapter.sources._linescan import kept as _scan
except ImportError:  # not compiled here: the same decisions in Python
    _scan = None

PREFIX = b'{"resourceType":"Observation",'  # the lines it decides on (compact Bulk Data form)
_DATE = b'"effectiveDateTime":"'
_CODE = b'"code":{"coding":['
_UNDECIDED = object()
log = logging.getLogger("fhir_adapter.sources")


class ObservationPrefilter:
    """Decides on raw NDJSON lines; built once, inherited by the forked workers of pass 1."""

    kind = "Observation dated before every look-back that reads it (skipped unparsed)"

    def __init__(self, first_read: Callable[[list[Any]], str | None], latest: str) -> None:
        """``first_read(codings)``: the first date (YYYY-MM-DD) any criterion reads an Observation with these
        codings, or None when some criterion may read it whatever its date. ``latest``: the latest such date
        over all codings; a line dated on or after it is kept without looking at its code."""
        self._first_read = first_read
        self.latest = latest.encode()
        self._cache: dict[bytes, bytes | None] = {}

    def skips(self, line: bytes) -> bool:
        """True when no criterion reads this Observation line (one starting with ``PREFIX``; see the module text
        for what is kept)."""
        i = line.find(_DATE)
        if i < 0:
            return False
        day = line[i + 21:i + 31]
        if day >= self.latest or day[4:5] != b"-" or day[7:8] != b"-":
            return False
        c = line.find(_CODE)
        if c < 0:
            return False
        codings = line[c + 18:line.find(b"}]", c) + 1]
        first = self._cache.get(codings, _UNDECIDED)
        if first is _UNDECIDED:
            first = self._decide(codings)
        if first is None or day >= first:  # type: ignore[operator]
            return False
        return line.find(b'"contained"') < 0 and line.find(b'"component"', 0, c) < 0

    def kept(self, buf: bytes | memoryview) -> tuple[list[tuple[int, bytes]], int]:
        """The lines of ``buf`` (split on newlines like ``bytes.split``) that ``skips`` does not skip, each with
        its index, and how many lines ``buf`` holds."""
        if _scan is None:
            return self.kept_by_python(buf)
        lines, count = _scan(buf, PREFIX, self.latest, self._cache)
        skips = self.skips
        return [(i, line) for i, line, undecided in lines if not (undecided and skips(line))], count

    def kept_by_python(self, buf: bytes | memoryview) -> tuple[list[tuple[int, bytes]], int]:
        """``kept`` without the compiled scanner."""
        lines = bytes(buf).split(b"\n")
        skips = self.skips
        return [(i, line) for i, line in enumerate(lines) if not (line.startswith(PREFIX) and skips(line))], len(lines)

    def _decide(self, codings: bytes) -> bytes | None:
        """The first date read for these codings (``codings``: the raw text up to the first ``}]``, the whole
        array unless a ``}]`` sits inside a string or a nested array: then it is not valid JSON, and kept).

        Only codings of the shape a Coding has (an object whose ``system`` and ``code`` are strings) are asked
        about; any other is kept, for pass 2 to name (``sources.check``). Whatever ``first_read`` raises keeps
        the line too: a line is dropped here only on a sure answer."""
        first: bytes | None = None
        try:
            parsed = orjson.loads(b"[" + codings + b"]")
        except orjson.JSONDecodeError:
            parsed = None
        if parsed and all(type(c) is dict and type(c.get("system", "")) is str and type(c.get("code", "")) is str
                          for c in parsed):
            try:
                found = self._first_read(parsed)
            except Exception as e:  # a caller's fault must not stop pass 1: keep, and say why once
                log.debug("look-back of codings %r not decided (%s: %s); kept", codings[:200], type(e).__name__, e)
                found = None
            first = found.encode() if found else None
        if len(self._cache) < 100_000:
            self._cache[codings] = first
        return first
