"""The benchmarks still run and print their figures (a smoke test on a few hundred patients, not a timing)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GENERATOR = ROOT.parent / "shared" / "bench" / "gen_population.py"


@pytest.mark.skipif(not GENERATOR.exists(), reason="../shared/bench/gen_population.py is not beside the project")
def test_records_benchmark_prints_its_figures(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "records.py"), "--patients", "300",
                           "--cache", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    header, row = done.stdout.strip().splitlines()[-2:]
    assert "patients/s" in header and "tree MB" in header
    cells = row.split()
    assert cells[0] == "300"
    assert float(cells[2].replace(",", "")) > 0  # patients per second


def test_terminology_benchmark_prints_its_figures() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "terminology.py"), "--seconds", "0.1"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = {line.split("  ")[0]: line.split() for line in done.stdout.splitlines()}
    classified = rows["CodeableConcepts classified"]
    converted = rows["quantities converted"]
    assert int(classified[2].replace(",", "")) > 1000  # items from the sample
    assert int(converted[3].replace(",", "")) == int(converted[2].replace(",", ""))  # every quantity converts


@pytest.mark.skipif(not GENERATOR.exists(), reason="../shared/bench/gen_population.py is not beside the project")
def test_screen_benchmark_prints_its_figures(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "screen.py"), "--patients", "300",
                           "--cache", str(tmp_path), "--share"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    cells = lines[-3].split()
    assert cells[0] == "300" and float(cells[2].replace(",", "")) > 0
    share = re.search(r"name index and product names: ([0-9.]+)% of the screen's CPU .*; 300 patients", lines[-1])
    assert share and 0 < float(share.group(1)) < 100, lines[-1]


@pytest.mark.skipif(not GENERATOR.exists(), reason="../shared/bench/gen_population.py is not beside the project")
def test_linescan_benchmark_prints_both_ways_keeping_the_same_lines(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "linescan.py"), "--patients", "200",
                           "--megabytes", "20", "--cache", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines()[1:] if line[:1].isalpha() and "(" not in line]
    assert [r[-5:-3] for r in rows] == [rows[0][-5:-3]] * len(rows)  # same lines read and kept by every way
    assert int(rows[0][-4].replace(",", "")) > 0


@pytest.mark.skipif(not GENERATOR.exists(), reason="../shared/bench/gen_population.py is not beside the project")
def test_cohort_benchmark_prints_the_screen_beside_duckdb(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "cohort.py"), "--patients", "200", "--repeat",
                           "1", "--cache", str(tmp_path)], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line.split() for line in done.stdout.splitlines()[1:]}
    assert set(rows) == {"rheumatology", "hospital"}
    for cells in rows.values():
        assert cells[1] == "200" and float(cells[4]) > 0  # x DuckDB
        assert int(cells[7].replace(",", "")) < int(cells[8].replace(",", ""))  # a short result writes less
