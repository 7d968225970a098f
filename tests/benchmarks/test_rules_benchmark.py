"""benchmarks/rules.py still runs and prints its figure (a smoke test on a few hundred patients, not a timing)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GENERATOR = ROOT.parent / "shared" / "bench" / "gen_population.py"


@pytest.mark.skipif(not GENERATOR.exists(), reason="../shared/bench/gen_population.py is not beside the project")
def test_rules_benchmark_prints_ms_per_patient_for_each_study(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "rules.py"), "--patients", "200", "--repeat", "1",
                           "--cache", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    header, *rows = done.stdout.strip().splitlines()
    assert "ms/patient" in header
    assert [r.split()[:2] for r in rows] == [["NCT07377058", "200"], ["NCT04966884", "200"]]
    assert all(float(r.split()[2]) > 0 for r in rows)
