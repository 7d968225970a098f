"""Result lines of the built-in sample (both studies, and response), made once per test session."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "fhir_adapter.cli.main", *args], input=stdin,
                          capture_output=True, timeout=600, cwd=ROOT)


def lines_of(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


@pytest.fixture(scope="session")
def sample_lines(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("report-sample")
    files = {}
    for name, args in (("promis", ("screen", "--study", "NCT07377058", "--as-of", "2026-06-30")),
                       ("tofa", ("screen", "--study", "NCT04966884", "--as-of", "2026-06-30")),
                       ("response", ("response", "--study", "NCT04966884"))):
        done = run_cli(*args, "--source", "sample")
        assert done.returncode == 0, done.stderr.decode()
        files[name] = out / f"{name}.jsonl"
        files[name].write_bytes(done.stdout)
    return files
