"""A Spark session for the command line and the tests: local mode unless a master URL is given."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any


def session(master: str | None = None, **conf: str) -> Any:
    """The active session (Databricks), or a new one on ``master`` (default: ``spark-submit``'s, else ``local[*]``)
    with the Spark UI off and, in local mode, this Python for the workers. ``conf``: more Spark settings."""
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None and master is None:
        return active
    local = (master or "local").startswith("local")
    if local:
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.master(master) if master else SparkSession.builder  # else spark-submit's
    builder = (builder.appName("fhir-adapter")
               .config("spark.ui.enabled", "false")
               .config("spark.ui.showConsoleProgress", "false")
               .config("spark.sql.session.timeZone", "UTC"))
    if local:  # a few shuffle partitions a core, not 200: each is a task that loads the study in Python
        conf = {"spark.sql.shuffle.partitions": str(2 * _cores(master or "local[*]")), **conf}
    for k, v in conf.items():
        builder = builder.config(k, v)
    spark = builder.getOrCreate()
    with contextlib.suppress(Exception):  # Spark Connect has no SparkContext here
        spark.sparkContext.setLogLevel("ERROR")
    return spark


def _cores(master: str) -> int:
    """The cores of a ``local``, ``local[N]``, ``local[*]`` or ``local[N,F]`` master."""
    inside = master.partition("[")[2].partition("]")[0].partition(",")[0]
    if inside.isdigit():
        return max(1, int(inside))
    return (os.cpu_count() or 1) if inside == "*" else 1
