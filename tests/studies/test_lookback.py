"""Observation look-backs (study file ``observation_lookback``): the population screen skips what no criterion
reads, and gives the same results as reading everything."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Any

import orjson
import pytest

from fhir_adapter.cli.main import main
from fhir_adapter.errors import ConfigError
from fhir_adapter.paths import sample_dir
from fhir_adapter.studies.definition import load_study, parse_study
from fhir_adapter.studies.lookback import horizon
from fhir_adapter.studies.screen import screen
from fhir_adapter.terminology.catalog import Catalog
from tests.studies.helpers import LOINC, Rec, S, result

SCREEN = ["screen", "--study", "NCT07377058", "--source", "sample", "--as-of", "2026-06-30", "--workers", "1"]
# The only wording that may differ: what lies outside a window is named only when it was read.
OUTSIDE = re.compile(r"; (latest \S+, outside the window|results before \S+ not read \(--full-history reads them\))")


def test_horizon_is_the_screening_date_minus_each_look_back() -> None:
    first = horizon(load_study("NCT07377058"), S)
    assert first["wbc"] == date(2026, 6, 2)  # lab_lookback_days 28
    assert first["body-weight"] == date(2026, 4, 1)  # weight_lookback_days 90
    assert "anti-mda5" not in first and "fvc-pct-predicted" not in first  # read at any date (I2, E8 onset)
    longer = load_study("NCT07377058").with_settings({"lab_lookback_days": 60})
    assert horizon(longer, S)["wbc"] == date(2026, 5, 1)


def _lines(out: str) -> list[dict[str, Any]]:
    rows = [orjson.loads(line) for line in out.splitlines()]
    for row in rows:
        for c in row["criteria"].values():
            c["reason"] = OUTSIDE.sub("", c["reason"])
    return rows


def test_sample_screen_with_and_without_skipping_gives_the_same_results(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(SCREEN) == 0
    skipped, err = capsys.readouterr()
    assert main([*SCREEN, "--full-history"]) == 0
    full, err_full = capsys.readouterr()
    assert re.search(r"Observation dated before every look-back that reads it \(skipped unparsed\) \d+", err)
    assert "skipped unparsed" not in err_full
    a, b = _lines(skipped), _lines(full)
    scenarios = orjson.loads((sample_dir() / "scenarios.json").read_bytes())
    assert len(a) == len(scenarios["patients"]) and a == b


def test_a_rule_reaching_before_the_horizon_is_unknown_never_decided() -> None:
    """A study file listing anti-MDA5 with a 28-day look-back is wrong (I2 reads it at any date): I2 must not
    be decided on the shortened history."""
    rec = Rec().qual("107563-9", True, offset=-400).cond("M33.10", offset=-400)
    study = load_study("NCT07377058")
    catalog = Catalog.load(None)
    assert result(screen(rec.record(), study, catalog, S), "I2") == "met"
    out = screen(rec.record(), study, catalog, S, horizon={"anti-mda5": date(2026, 6, 2)})
    assert out["criteria"]["I2"]["result"] == "unknown"
    assert "HorizonError" in out["criteria"]["I2"]["reason"] and "I2" in out["review"]


def test_a_lab_in_the_window_decides_the_same_with_a_horizon() -> None:
    rec = Rec().lab("6690-2", 2.5, "10*9/L", offset=-5, system=LOINC)
    catalog, study = Catalog.load(None), load_study("NCT07377058")
    out = screen(rec.record(), study, catalog, S, horizon=horizon(study, S))
    assert out["criteria"]["E3a"]["result"] == "met" and out["criteria"]["E3a"]["evidence"] == ["Observation/obs1"]


def test_study_file_look_backs_must_name_a_numeric_setting() -> None:
    doc = orjson.loads(Path(load_study("NCT07377058").path).read_bytes())
    doc["observation_lookback"]["concepts"]["wbc"] = "no_such_setting"
    doc["observation_lookback"]["concepts"]["hemoglobin"] = -3
    with pytest.raises(ConfigError) as e:
        parse_study(doc, "test")
    assert "observation_lookback.wbc" in str(e.value) and "observation_lookback.hemoglobin" in str(e.value)


def test_records_for_a_study_hold_only_what_its_screen_reads(capsys: pytest.CaptureFixture[str]) -> None:
    base = ["records", "--source", "sample", "--workers", "1"]
    assert main(base) == 0
    whole = {r["patient"]: r["resources"] for r in map(orjson.loads, capsys.readouterr()[0].splitlines())}
    assert main([*base, "--study", "NCT07377058", "--as-of", "2026-06-30"]) == 0
    out, err = capsys.readouterr()
    read = {r["patient"]: r["resources"] for r in map(orjson.loads, out.splitlines())}
    assert read.keys() == whole.keys()  # every patient still has a record
    fewer = [p for p in read if read[p].get("Observation", 0) < whole[p].get("Observation", 0)]
    assert fewer and "skipped unparsed" in err
    assert all({k: v for k, v in read[p].items() if k != "Observation"} ==
               {k: v for k, v in whole[p].items() if k != "Observation"} for p in read)
    assert main([*base, "--as-of", "2026-06-30"]) == 1  # --study alone screens as of today
    assert "--as-of goes with --study" in capsys.readouterr()[1]
