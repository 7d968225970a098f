"""``open_source``: the right ``Source`` for what a user typed after ``--source``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fhir_adapter.errors import SourceError
from fhir_adapter.paths import sample_dir
from fhir_adapter.sources.base import Source


def open_source(spec: str, **options: Any) -> Source:
    """Open a source from its spec.

    - ``sample``: the built-in synthetic population;
    - ``http(s)://...``: a FHIR R4 server (``export=True``: through a Bulk Data ``$export`` instead of searches);
    - a folder of Bulk Data NDJSON files (``Type.ndjson``, ``Type.*.ndjson``, gzip too), or one such file;
    - a FHIR Bundle file (searchset, collection, transaction, batch), or a folder of them.
    """
    if spec == "sample":
        from fhir_adapter.sources.ndjson import NdjsonSource

        return NdjsonSource(sample_dir(), name="sample", **options)
    if spec.startswith(("http://", "https://")):
        if options.pop("export", False):
            from fhir_adapter.sources.bulk_export import ExportSource

            return ExportSource(spec, **options)
        from fhir_adapter.sources.server import ServerSource

        return ServerSource(spec, **options)
    path = Path(spec)
    if not path.exists():
        raise SourceError(f"source {spec!r}: no such file or folder, and not a http(s) URL or 'sample'")
    from fhir_adapter.sources.ndjson import NdjsonSource, ndjson_files

    if path.is_dir():
        if ndjson_files(path):
            return NdjsonSource(path, **options)
        from fhir_adapter.sources.bundle import BundleSource

        return BundleSource(path, **options)
    if path.name.endswith((".ndjson", ".ndjson.gz", ".jsonl", ".jsonl.gz")):
        return NdjsonSource(path, **options)
    from fhir_adapter.sources.bundle import BundleSource

    return BundleSource(path, **options)
