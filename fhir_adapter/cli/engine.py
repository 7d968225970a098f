"""``--engine local|spark`` and ``--spark-master`` for the commands that read whole patients (screen, response)."""

from __future__ import annotations

import argparse
from typing import Any

from fhir_adapter.errors import ConfigError


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("engine")
    g.add_argument("--engine", choices=["local", "spark"], default="local",
                   help="local (default): this machine's cores; spark: Apache Spark (pip install "
                        "'fhir-adapter[spark]'), for NDJSON on any path Spark reads, same result lines")
    g.add_argument("--spark-master", metavar="URL",
                   help="with --engine spark: the Spark master (default: the active session, else local[*])")


def spark_source(args: argparse.Namespace) -> Any:
    """The ``SparkSource`` for ``--source`` (an NDJSON folder or file, or 'sample')."""
    if args.source.startswith(("http://", "https://")):
        raise ConfigError("--engine spark reads NDJSON files (a folder or file Spark reads), not a FHIR server")
    if args.write_back or args.dry_run:
        raise ConfigError("--engine spark does not write back; run the write-back with --engine local")
    try:
        from fhir_adapter.spark.source import SparkSource
    except ImportError as e:
        raise ConfigError(f"--engine spark needs pyspark: pip install 'fhir-adapter[spark]' ({e})") from None
    path, name = args.source, None
    if path == "sample":
        from fhir_adapter.paths import sample_dir

        path, name = str(sample_dir()), "sample"
    return SparkSource(path, name=name, master=args.spark_master)
