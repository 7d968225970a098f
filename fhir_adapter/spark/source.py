"""``SparkSource``: an NDJSON source whose ``map_records`` runs in Spark (``fhir-adapter ... --engine spark``), so
the commands run unchanged on it. Results come back in the command line's order: by its bucket of each patient
(``crc32(id)`` modulo the bucket count ``partition.map_grouped`` derives from the files' size), then by id."""

from __future__ import annotations

import pickle
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any, TypeVar

from fhir_adapter.errors import ConfigError
from fhir_adapter.sources.base import Early, Source
from fhir_adapter.sources.prefilter import ObservationPrefilter

R = TypeVar("R")
BUCKET_BYTES = 48 << 20  # ``NdjsonSource``'s default


def buckets(path: str) -> int:
    """The bucket count of the command line for the local file or folder ``path`` (1 elsewhere)."""
    from fhir_adapter.sources.ndjson import ndjson_files

    local = Path(path.removeprefix("file:"))
    if not local.exists():
        return 1
    total = sum(f.stat().st_size * (6 if f.name.endswith(".gz") else 1) for f in ndjson_files(local))
    return max(1, -(-total // BUCKET_BYTES))


class SparkSource(Source):
    """Bulk Data NDJSON (a folder or file on any path Spark reads) read whole patient by patient in Spark."""

    prefilters = True

    def __init__(self, path: str, name: str | None = None, master: str | None = None,
                 partitions: int | None = None) -> None:
        super().__init__()
        self.path, self.name, self.master, self.partitions = path, name or path, master, partitions

    def resources(self, types: Collection[str] | None = None) -> Iterator[tuple[dict[str, Any], str]]:
        raise ConfigError("--engine spark reads whole patients (screen, response); use --engine local here")

    def records(self, patients: Collection[str] | None = None) -> Iterator[Any]:
        raise ConfigError("--engine spark reads whole patients (screen, response); use --engine local here")

    def map_records(self, fn: Callable[[Any], R], patients: Collection[str] | None = None, workers: Any = None,
                    prefilter: ObservationPrefilter | None = None, early: Early | None = None) -> Iterator[R]:
        from pyspark import StorageLevel
        from pyspark.sql import functions as F

        from fhir_adapter.spark.jobs import grouped, with_reports
        from fhir_adapter.spark.session import session

        spark = session(self.master)
        df = grouped(spark, self.path, (fn, early), self.report, prefilter=prefilter, patients=patients,
                     name=self.name, partitions=self.partitions)
        n = buckets(self.path)
        # The results are kept (they are small) before the global sort: its sampling job would otherwise run the
        # whole plan, the Python workers included, a second time.
        done = df.withColumn("bucket", F.pmod(F.crc32(F.col("key").cast("binary")), F.lit(n))) \
            .persist(StorageLevel.MEMORY_AND_DISK)
        try:
            ordered = done.orderBy("bucket", "anchor", "seq").select("patient", "payload", "read")
            for row in with_reports(ordered.toLocalIterator(prefetchPartitions=True), self.report):
                if row["patient"] is not None:
                    yield pickle.loads(row["payload"])
        finally:
            done.unpersist()
