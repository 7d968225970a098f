"""``screen``/``response`` with ``--write-back``, ``--dry-run`` and ``--target`` (issue 6)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.server
PATIENT = "bnd-e13-ivig-old"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fhir_adapter.cli.main", *args], capture_output=True, text=True,
                          timeout=300)


def _screen(*extra: str) -> subprocess.CompletedProcess:
    return _run("screen", "--study", "NCT07377058", "--source", "sample", "--as-of", "2026-06-30",
                "--patient", PATIENT, *extra)


def test_dry_run_prints_bundles_and_writes_nothing(fhir_base) -> None:
    done = _screen("--dry-run", "--target", fhir_base, "--as-of", "2026-03-01")  # in the entry cohort then
    assert done.returncode == 0, done.stderr
    bundles = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(bundles) == 1 and bundles[0]["type"] == "transaction"
    types = [e["resource"]["resourceType"] for e in bundles[0]["entry"]]
    assert "ResearchSubject" in types and "Observation" in types and types[-1] == "Provenance"
    assert "assignedArm" not in done.stdout and "actualArm" not in done.stdout
    assert "would write" in done.stderr


def test_write_back_then_rerun_writes_nothing(fhir_base) -> None:
    first = _screen("--write-back", "--target", fhir_base)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout.splitlines()[0])["patient"] == f"Patient/{PATIENT}"
    second = _screen("--write-back", "--target", fhir_base)
    assert second.returncode == 0, second.stderr
    assert "wrote 0 resources" in second.stderr


def test_response_write_back(fhir_base) -> None:
    args = ("response", "--study", "NCT04966884", "--source", "sample", "--patient", "tofa-inactive-12m",
            "--write-back", "--target", fhir_base)
    assert _run(*args).returncode == 0
    again = _run(*args)
    assert again.returncode == 0 and "wrote 0 resources" in again.stderr


def test_write_back_needs_a_server() -> None:
    done = _screen("--write-back")
    assert done.returncode != 0 and "--target" in done.stderr
