"""``sample_loaded`` (conftest.py) reloads the sample only when the server does not hold it as it is now."""

from __future__ import annotations

import shutil
from pathlib import Path

import orjson
import pytest

from fhir_adapter.client import FhirClient
from fhir_adapter.paths import sample_dir
from tests.service.conftest import sample_is_current

pytestmark = pytest.mark.server


def _copy(tmp_path: Path) -> Path:
    folder = tmp_path / "sample"
    shutil.copytree(sample_dir(), folder)
    return folder


def test_the_loaded_sample_is_current_and_a_changed_one_is_not(sample_loaded: str, tmp_path: Path, tag: str) -> None:
    with FhirClient(sample_loaded) as client:
        assert sample_is_current(client)
        changed = _copy(tmp_path)
        lines = (changed / "Patient.ndjson").read_bytes().splitlines()
        first = orjson.loads(lines[0])
        first["gender"] = "other" if first.get("gender") != "other" else "male"
        (changed / "Patient.ndjson").write_bytes(b"\n".join([orjson.dumps(first), *lines[1:]]))
        assert not sample_is_current(client, changed)  # the sample changed: one Patient differs
        added = _copy(tmp_path / "added")
        with (added / "Observation.ndjson").open("ab") as fh:  # a resource the server does not have
            fh.write(b"\n" + orjson.dumps({**orjson.loads((sample_dir() / "Observation.ndjson").read_bytes()
                                                           .splitlines()[0]), "id": f"absent-{tag}"}) + b"\n")
        assert not sample_is_current(client, added)
