"""``ExportSource``: a server read through Bulk Data ``$export``, then read as NDJSON files on disk.

For a whole population this is far cheaper for the server than one search per patient and type: Epic
and Cerner recommend it for anything beyond a few hundred patients. The export runs on first use
(``resources``/``records``/``map_records``, or ``run()``); the files land in a work folder that
``close()`` removes unless ``keep=True`` or the caller chose the folder (``workdir=``).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Collection, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import requests

from fhir_adapter.client import BulkExport, ExportManifest, FhirClient, RetryPolicy, outcome_text
from fhir_adapter.errors import FhirError, SourceError
from fhir_adapter.record.patient_record import PatientRecord
from fhir_adapter.record.resource_types import rules
from fhir_adapter.sources.base import Source

log = logging.getLogger("fhir_adapter.sources")
R = TypeVar("R")
EXPORT_ERROR = "export error (OperationOutcome in the manifest)"


def default_types() -> list[str]:
    """What the adapter reads: Patient, the clinical types and the shared ones (Medication)."""
    return ["Patient", *rules().clinical, *sorted(rules().shared)]


class ExportSource(Source):
    """``$export`` from ``base_url``, delegated to ``NdjsonSource`` once downloaded (its report is this one).

    ``types`` (``_type``; default: the types the adapter reads), ``since`` (``_since``), ``type_filter``
    (``_typeFilter``), ``level`` ("system", "patient" or "Group/<id>"). ``export_timeout`` bounds the
    wait for the manifest. ``workers``/``bucket_bytes`` go to ``NdjsonSource``.
    """

    def __init__(self, base_url: str, *, client: FhirClient | None = None,
                 auth: requests.auth.AuthBase | None = None, types: Collection[str] | None = None,
                 since: str | datetime | None = None, type_filter: Collection[str] | None = None,
                 level: str = "system", workdir: str | Path | None = None, keep: bool = False,
                 export_timeout: float = 3600.0, poll_interval: float = 2.0, retry: RetryPolicy | None = None,
                 request_timeout: float | tuple[float, float] = (5, 60), workers: int | None = None,
                 bucket_bytes: int | None = None, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic, **options: Any) -> None:
        super().__init__()
        self._own_client = client is None
        self.client = client or FhirClient(base_url, auth=auth, retry=retry, timeout=request_timeout)
        self.name = self.client.base_url
        self.export = BulkExport(self.client, timeout=export_timeout, poll_interval=poll_interval,
                                 sleep=sleep, clock=clock)
        self._kick_off = {"level": level, "types": list(types) if types is not None else default_types(),
                          "since": since, "type_filter": type_filter}
        self.keep = keep or workdir is not None
        self._chosen = Path(workdir) if workdir is not None else None
        self.folder: Path | None = None
        self.manifest: ExportManifest | None = None
        self._ndjson_options = {k: v for k, v in (("workers", workers), ("bucket_bytes", bucket_bytes))
                                if v is not None}
        self._delegate: Source | None = None
        self._done = False
        if options:
            log.debug("%s: options not used by an export source: %s", self.name, ", ".join(sorted(options)))

    def run(self) -> Source | None:
        """Export and download (once): the NDJSON source reading the files, None when the export is empty."""
        if self._done:
            return self._delegate
        self.folder = self._make_folder()
        try:
            manifest, files = self.export.run(self.folder, **self._kick_off)
        except FhirError as exc:
            raise SourceError(f"{self.name}: $export failed: {exc}") from exc
        self.manifest = manifest
        self._count_errors(manifest)
        self.export.cancel(manifest.status_url)  # downloaded: the server may delete its copies
        self._done = True
        if files:
            from fhir_adapter.sources.ndjson import NdjsonSource

            self._delegate = NdjsonSource(self.folder, name=self.name, **self._ndjson_options)
            self._delegate.report = self.report  # one report: export errors and NDJSON skips together
        else:
            log.info("%s: the export has no files (nothing matched)", self.name)
        return self._delegate

    def resources(self, types: Collection[str] | None = None) -> Iterator[tuple[dict[str, Any], str]]:
        source = self.run()
        return source.resources(types) if source else iter(())

    def records(self, patients: Collection[str] | None = None) -> Iterator[PatientRecord]:
        source = self.run()
        return source.records(patients) if source else iter(())

    prefilters = True  # the export lands as NDJSON files

    def map_records(self, fn: Callable[[PatientRecord], R], patients: Collection[str] | None = None,
                    workers: int | None = None, prefilter: Any = None, early: Any = None) -> Iterator[R]:
        source = self.run()
        if source is None:
            return iter(())
        return source.map_records(fn, patients, workers=workers, prefilter=prefilter,  # type: ignore[arg-type]
                                  early=early)

    def close(self) -> None:
        if self._delegate is not None:
            self._delegate.close()
        if self.folder is not None and not self.keep:
            shutil.rmtree(self.folder, ignore_errors=True)
        elif self.folder is not None:
            log.info("%s: exported files kept in %s", self.name, self.folder)
        if self._own_client:
            self.client.close()

    def _make_folder(self) -> Path:
        if self._chosen is None:
            return Path(tempfile.mkdtemp(prefix="fhir-export-"))
        self._chosen.mkdir(parents=True, exist_ok=True)
        if any(self._chosen.rglob("*.ndjson*")):
            raise SourceError(f"{self._chosen}: the export folder already holds NDJSON files; they would be "
                              "read with the new export. Give an empty folder.")
        return self._chosen

    def _count_errors(self, manifest: ExportManifest) -> None:
        """The manifest's ``error`` files: OperationOutcomes of what the server could not export."""
        try:
            for outcome, where in self.export.errors(manifest):
                self.report.skip(where, outcome_text(outcome) or "the server reported an export error",
                                 kind=EXPORT_ERROR)
        except FhirError as exc:
            self.report.skip(exc.request, f"cannot read the export's error file: {exc}", kind=EXPORT_ERROR)
