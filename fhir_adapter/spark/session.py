"""A Spark session for the command line and the tests: local mode unless a master URL is given."""

from __future__ import annotations

import os
import sys
from typing import Any


def session(master: str | None = None, **conf: str) -> Any:
    """The active session (Databricks, ``spark-submit``), or a new one on ``master`` (default ``local[*]``) with the
    Spark UI off and this Python for the workers. ``conf``: more Spark settings."""
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None and master is None:
        return active
    if (master or "local").startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = (SparkSession.builder.master(master or "local[*]").appName("fhir-adapter")
               .config("spark.ui.enabled", "false")
               .config("spark.ui.showConsoleProgress", "false")
               .config("spark.sql.session.timeZone", "UTC"))
    for k, v in conf.items():
        builder = builder.config(k, v)
    spark = builder.getOrCreate()
    try:
        spark.sparkContext.setLogLevel("ERROR")
    except Exception:  # Spark Connect: no SparkContext here
        pass
    return spark
