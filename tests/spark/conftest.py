"""One local[2] Spark session for every Spark test (start-up is paid once): UI off, two shuffle partitions, the
driver on 127.0.0.1. Without Java the tests skip with the reason, except under CI=true, where they fail."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest


def _java() -> str | None:
    home = os.environ.get("JAVA_HOME")
    if home and os.path.exists(os.path.join(home, "bin", "java")):
        return os.path.join(home, "bin", "java")
    return shutil.which("java")


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    if _java() is None:
        why = "no Java found (JAVA_HOME or java on PATH): the Spark engine's tests need Java 17 or 21"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but {why}")
        pytest.skip(why)
    pytest.importorskip("pyspark", reason="pyspark is not installed: pip install -e '.[test,spark]'")
    from fhir_adapter.spark.session import session

    s = session("local[2]", **{"spark.sql.shuffle.partitions": "2", "spark.default.parallelism": "2",
                               "spark.driver.host": "127.0.0.1"})
    yield s
    s.stop()
