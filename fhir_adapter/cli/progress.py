"""Progress of a long command on standard error: a bar (count, rate, time left) on a terminal, a plain line every
few seconds otherwise, nothing with ``-q``.

The interval of the plain lines is ``FHIR_ADAPTER_PROGRESS_SECONDS`` (default 5; 0: a line at every step). The
bar redraws at most four times a second. ``advance`` costs a counter and a clock read: the screen's hot path
does not notice it.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Any, TypeVar

T = TypeVar("T")
ENV = "FHIR_ADAPTER_PROGRESS_SECONDS"
DEFAULT_SECONDS = 5.0
BAR_SECONDS = 0.25


def interval() -> float:
    """Seconds between two plain progress lines (``FHIR_ADAPTER_PROGRESS_SECONDS``)."""
    try:
        return max(0.0, float(os.environ.get(ENV, DEFAULT_SECONDS)))
    except ValueError:
        return DEFAULT_SECONDS


def _duration(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class Progress:
    """Counts steps (``advance``) of a run of ``label``; ``total`` when known (else count and rate only)."""

    def __init__(self, label: str, total: int | None = None, unit: str = "patients", *, quiet: bool = False,
                 stream: IO[str] | None = None) -> None:
        self.label, self.total, self.unit = label, total, unit
        self.stream = stream or sys.stderr
        self.n = self.shown = 0
        self.quiet = quiet
        self.start = self.last = time.monotonic()
        self.bar: Any = None
        self.every = interval()
        if quiet:
            return
        if _is_terminal(self.stream):
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit=f" {unit}", desc=f"fhir-adapter: {label}", file=self.stream,
                            mininterval=BAR_SECONDS, dynamic_ncols=True, leave=False)
            self.every = BAR_SECONDS

    def advance(self, n: int = 1) -> None:
        self.n += n
        if self.quiet:
            return
        now = time.monotonic()
        if now - self.last >= self.every:
            self._show(now)

    def set_total(self, total: int | None) -> None:
        self.total = total
        if self.bar is not None:
            self.bar.total = total

    def _show(self, now: float) -> None:
        self.last = now
        self.shown = self.n
        if self.bar is not None:
            self.bar.update(self.n - self.bar.n)
            return
        elapsed = now - self.start
        rate = self.n / elapsed if elapsed > 0 else 0.0
        done = f"{self.n:,}" + (f" of {self.total:,}" if self.total else "")
        left = ""
        if self.total and rate > 0 and self.n < self.total:
            left = f", about {_duration((self.total - self.n) / rate)} left"
        print(f"fhir-adapter: {self.label}: {done} {self.unit}, {rate:,.1f}/s, {_duration(elapsed)} elapsed{left}",
              file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is None and not self.quiet and self.shown and self.shown != self.n:
            self._show(time.monotonic())  # the last count, after lines that showed earlier ones
        if self.bar is not None:
            self.bar.update(self.n - self.bar.n)
            self.bar.close()
            self.bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def counted(items: Iterable[T], progress: Progress) -> Iterator[T]:
    """``items``, one ``progress`` step each."""
    for item in items:
        progress.advance()
        yield item
    progress.close()


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def estimate_patients(source: Any, patients: list[str] | None = None) -> int | None:
    """The number of patients a run will go through, when it costs little to know: the ``--patient`` ids, or the
    lines of a folder's uncompressed ``Patient*.ndjson`` files; else None (a server, Bundles: count and rate
    only)."""
    if patients:
        return len(set(patients))
    files = getattr(source, "files", None)
    if not files or type(source).__name__ != "NdjsonSource":
        return None
    found = [f for f in files if Path(f).name.split(".")[0] == "Patient"]
    if not found or any(str(f).endswith(".gz") for f in found):
        return None
    n = 0
    for f in found:
        with open(f, "rb") as fh:
            while chunk := fh.read(1 << 20):
                n += chunk.count(b"\n")
    return n or None
