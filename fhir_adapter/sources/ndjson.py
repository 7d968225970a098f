"""Bulk Data NDJSON: a folder of files as ``$export`` writes them (one resource type per file, gzip too).

Population runs go through ``partition.map_grouped``: two streaming passes over the files, on every core,
with memory flat whatever the population size.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any, TypeVar

import orjson

from fhir_adapter.errors import SourceError
from fhir_adapter.record.patient_record import PatientRecord
from fhir_adapter.sources import limits
from fhir_adapter.sources.base import Early, Source
from fhir_adapter.sources.check import problem
from fhir_adapter.sources.partition import default_workers, map_grouped
from fhir_adapter.sources.prefilter import ObservationPrefilter
from fhir_adapter.sources.reading import TOO_LONG, TOO_LONG_KIND, file_lines, too_long_reason, too_long_size

R = TypeVar("R")
SUFFIXES = (".ndjson", ".ndjson.gz", ".jsonl", ".jsonl.gz")


def ndjson_files(path: Path) -> list[Path]:
    """The NDJSON files of a folder (and its subfolders), in name order; or ``[path]`` for one file."""
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith(SUFFIXES))


class NdjsonSource(Source):
    """A folder of Bulk Data NDJSON files, or a single NDJSON file. Lines longer than ``max_line_bytes``
    (default: ``FHIR_ADAPTER_MAX_LINE_BYTES``, 64 MiB) are named and not read."""

    def __init__(self, path: str | Path, name: str | None = None, *, workers: int | None = None,
                 workdir: str | Path | None = None, bucket_bytes: int = 48 << 20,
                 max_line_bytes: int | None = None) -> None:
        super().__init__()
        self.path = Path(path)
        self.files = ndjson_files(self.path)
        if not self.files:
            raise SourceError(f"{self.path}: no NDJSON files (*.ndjson, *.ndjson.gz) found")
        self.name = name or str(self.path)
        self.workers = workers or default_workers()
        self.workdir = Path(workdir) if workdir else None
        self.bucket_bytes = bucket_bytes
        self.max_line_bytes = max_line_bytes or limits.max_line_bytes()

    def resources(self, types: Collection[str] | None = None) -> Iterator[tuple[dict[str, Any], str]]:
        wanted = set(types) if types else None
        limit = self.max_line_bytes
        for f in self.files:
            n = 0
            try:
                for n, line in enumerate(file_lines(f, limit), start=1):
                    if not line.strip():
                        continue
                    where = f"{f.name} line {n}"
                    if line.startswith(TOO_LONG) or len(line) > limit:
                        size = too_long_size(line) if line.startswith(TOO_LONG) else len(line)
                        self.report.skip(where, too_long_reason(size, limit), kind=TOO_LONG_KIND)
                        continue
                    try:
                        resource = orjson.loads(line)
                    except orjson.JSONDecodeError as e:
                        self.report.skip(where, f"not JSON ({e})", kind="not JSON")
                        continue
                    bad = problem(resource)
                    if bad:
                        self.report.skip(where, bad[1], kind=bad[0])
                        continue
                    if wanted is None or resource["resourceType"] in wanted:
                        yield resource, where
            except (OSError, EOFError, zlib.error) as e:  # a gzip file cut short
                self.report.skip(f"{f.name} after line {n}", f"the file breaks off ({' '.join(str(e).split())}); "
                                 "the rest of it is not read", kind="file cut short")

    def records(self, patients: Collection[str] | None = None) -> Iterator[PatientRecord]:
        return self.map_records(_identity, patients, workers=1)

    prefilters = True

    def map_records(self, fn: Callable[[PatientRecord], R], patients: Collection[str] | None = None,
                    workers: int | None = None, prefilter: ObservationPrefilter | None = None,
                    early: Early | None = None) -> Iterator[R]:
        return map_grouped(self.files, fn, self.report, source=self.name, patients=patients,
                           workers=self.workers if workers is None else workers,
                           bucket_bytes=self.bucket_bytes, workdir=self.workdir, prefilter=prefilter,
                           max_line_bytes=self.max_line_bytes, early=early)


def _identity(record: PatientRecord) -> PatientRecord:
    return record
