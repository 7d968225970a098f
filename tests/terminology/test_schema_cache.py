"""Mapping files that passed validation are not validated again until they change (start-up time)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fhir_adapter.errors import ConfigError
from fhir_adapter.terminology import schema


def test_a_valid_document_is_remembered_and_a_changed_one_checked_again(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FHIR_ADAPTER_CACHE", str(tmp_path))
    concept = {"id": "x-test", "display": "X", "kind": "quantity", "unit": "U/L", "codes": []}
    good = {"domain": "test", "concepts": [concept]}
    schema.validate(good, "concepts.schema.json", "good.json")
    assert len(list((tmp_path / "validated").iterdir())) == 1
    bad = {"domain": "test", "concepts": [{**concept, "unit": 5}]}
    with pytest.raises(ConfigError, match=r"bad.json: concepts\[0\] \(id 'x-test'\): 'unit'"):
        schema.validate(bad, "concepts.schema.json", "bad.json")
    with pytest.raises(ConfigError):  # an invalid document is never remembered as valid
        schema.validate(bad, "concepts.schema.json", "bad.json")
    assert len(list((tmp_path / "validated").iterdir())) == 1


def test_a_warm_start_does_not_import_jsonschema(tmp_path: Path) -> None:
    code = ("import sys; from fhir_adapter.terminology.catalog import Catalog; Catalog.load(); "
            "print('jsonschema' in sys.modules)")
    env = {"FHIR_ADAPTER_CACHE": str(tmp_path), "PATH": "/usr/bin:/bin"}
    cold = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    warm = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert cold.stdout.strip() == "True", cold.stderr
    assert warm.stdout.strip() == "False", warm.stderr
