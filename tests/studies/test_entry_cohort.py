"""The entry cohort: the study's entry criteria (PROMIS-MDA5 I2, NCT04966884 T1) are evaluated first; a patient for
whom one is decided not-met gets a short result (ineligible, ``"cohort": "out"``, only that criterion); everyone
else gets every criterion (``"cohort": "in"``). The status is the full evaluation's for every patient: on the
sample, on hand-made cases a clinician can check, and on a 2,000-patient generated population."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any

import orjson
import pytest

from fhir_adapter.cli.main import main
from fhir_adapter.errors import ConfigError
from fhir_adapter.paths import sample_dir
from fhir_adapter.record.patient_record import Unreadable
from fhir_adapter.sources import open_source
from fhir_adapter.studies.definition import check_schema, load_study, parse_study
from fhir_adapter.studies.screen import out_of_cohort_by, screen
from fhir_adapter.terminology.catalog import Catalog
from tests.studies.helpers import SITE, Rec, S

STUDIES = ("NCT07377058", "NCT04966884")
SHORT_KEYS = {"patient", "mrn", "age", "sex", "study", "as_of", "status", "cohort", "reason", "review", "criteria"}
GENERATOR = Path(__file__).resolve().parents[3] / "shared" / "bench" / "gen_population.py"


def both(record: Any, study: Any, catalog: Catalog, as_of: date, horizon: Any = None) -> tuple[dict, dict]:
    """The default (entry cohort) result and the full one (``all_criteria``) of one record."""
    return (screen(record, study, catalog, as_of, None, horizon),
            screen(record, study, catalog, as_of, None, horizon, all_criteria=True))


def check_pair(short: dict[str, Any], full: dict[str, Any], study: Any) -> str:
    """The two results agree as the issue asks; returns the cohort."""
    assert short["status"] == full["status"], (short["patient"], short["reason"], full["reason"])
    assert short["cohort"] == full["cohort"] and short["cohort"] in ("in", "out")
    if short["cohort"] == "in":
        assert short == full  # in the cohort nothing is left out
        return "in"
    by = out_of_cohort_by(short, study)
    assert by == out_of_cohort_by(full, study) and by in study.entry
    assert short["status"] == "ineligible" and set(short) - {"unreadable", "set_aside"} == SHORT_KEYS
    assert list(short["criteria"]) == [by] and short["criteria"][by] == full["criteria"][by]
    assert short["criteria"][by]["result"] == "not-met"
    assert short["reason"].startswith(f"out of the entry cohort by {by} (")
    assert "passes_from" not in short and "information" not in short
    return "out"


@pytest.mark.parametrize("sid", STUDIES)
def test_sample_statuses_are_the_full_evaluations(sid: str) -> None:
    """Every sample patient, both studies: the same status with and without the entry cohort; the patients the
    scenarios say fail the entry criterion are the ones out of it."""
    study, catalog = load_study(sid), Catalog.load(SITE)
    scenarios = orjson.loads((sample_dir() / "scenarios.json").read_bytes())["patients"]
    entry = study.entry[0]
    expected_out = {p["id"] for p in scenarios if p["expected"].get(entry) == "not-met"}
    cohorts = {}
    with open_source("sample") as source:
        for record in source.records():
            cohorts[record.patient_id] = check_pair(*both(record, study, catalog, date(2026, 6, 30)), study)
    out = {pid for pid, c in cohorts.items() if c == "out"}
    assert out and len(out) < len(cohorts) / 5
    assert expected_out <= out  # other sample patients (other studies' scenarios) may be out too


def test_the_short_result_of_a_dermatomyositis_with_anti_mda5_negative() -> None:
    """Dermatomyositis (M33.10) with a negative anti-MDA5 is not anti-MDA5+ DM: out by I2, ineligible, I2 with its
    reason and both records as evidence, nothing else."""
    rec = Rec().cond("M33.10").qual("107563-9", False)
    out = rec.screen(all_criteria=False)
    assert out == {"patient": "Patient/p1", "mrn": None, "age": 35, "sex": "female",  # born 1990-08-29
                   "study": "NCT07377058", "as_of": "2026-06-30",
                   "status": "ineligible",
                   "cohort": "out",
                   "reason": "out of the entry cohort by I2 (anti-MDA5 positive dermatomyositis): not met; "
                             "no other criterion evaluated",
                   "review": [], "criteria": {"I2": out["criteria"]["I2"]}}
    i2 = out["criteria"]["I2"]
    assert i2["result"] == "not-met" and i2["reason"].startswith("anti-MDA5 negative on 2026-06-20")
    assert set(i2["evidence"]) == {"Condition/con1", "Observation/obs2"} and i2["protocol"].startswith("Inclusion 2")
    full = rec.screen()
    assert full["cohort"] == "out" and full["reason"].startswith("fails I2") and "E18" in full["criteria"]


def test_anti_mda5_positive_dermatomyositis_is_in_the_cohort() -> None:
    out = Rec().cond("M33.10").qual("107563-9", True).lab("29463-7", 58, "kg").screen(all_criteria=False)
    assert out["cohort"] == "in" and out["criteria"]["I2"]["result"] == "met" and "E18" in out["criteria"]


def test_entry_criterion_unknown_keeps_the_patient_in() -> None:
    """No Condition record at all: dermatomyositis cannot be ruled out, I2 unknown, every criterion evaluated."""
    out = Rec().lab("29463-7", 58, "kg").screen(all_criteria=False)
    assert out["cohort"] == "in" and out["criteria"]["I2"]["result"] == "unknown"
    assert out["status"] == "potential-candidate" and len(out["criteria"]) > 26


def test_an_unreadable_condition_never_rules_a_patient_out() -> None:
    """Conditions held, none dermatomyositis, but one Condition line could not be read: it may be the diagnosis,
    so I2 is unknown and the patient stays in the cohort (nothing unread decides)."""
    rec = Rec().cond("J84.10")
    assert rec.screen(all_criteria=False)["cohort"] == "out"
    record = rec.record()
    record.unreadable.append(Unreadable("Condition", "Condition.ndjson line 7", "not JSON"))
    out = screen(record, load_study("NCT07377058"), Catalog.load(None), S)
    assert out["cohort"] == "in" and out["criteria"]["I2"]["result"] == "unknown"
    assert out["unreadable"] == ["Condition.ndjson line 7: not JSON"]


def test_antibody_without_a_coded_diagnosis_is_out_and_flagged() -> None:
    """Anti-MDA5 positive, Conditions held but none dermatomyositis: I2 not met, flagged for review; the short
    result names I2 under review."""
    out = Rec().cond("J84.10").qual("107563-9", True).screen(all_criteria=False)
    assert out["cohort"] == "out" and out["review"] == ["I2"] and out["criteria"]["I2"]["needs_review"]


def test_deceased_and_out_of_the_cohort_says_both() -> None:
    out = Rec(deceasedDateTime="2026-05-01").cond("M33.10").qual("107563-9", False).screen(all_criteria=False)
    assert out["status"] == "ineligible" and out["cohort"] == "out"
    assert out["reason"].endswith("no other criterion evaluated; deceased on 2026-05-01 (Patient.deceasedDateTime)")


def _study_entered_by_age() -> Any:
    """PROMIS-MDA5 with I1 (age 18 to < 65) as its entry criterion: a criterion whose not-met has a date."""
    doc = orjson.loads(Path(load_study("NCT07377058").path).read_bytes())
    doc["entry_cohort"] = {"doc": "test: entered by age", "criteria": ["I1"]}
    check_schema(doc)
    return parse_study(doc, "age-entry")


def test_the_short_result_promises_no_passes_from() -> None:
    """A 17-year-old turning 18 on 2026-09-10: I1 passes from then, but the other criteria were not evaluated,
    so the short result gives no date for the patient (the criterion keeps its own); the full evaluation gives
    one only when every failing criterion has one."""
    study = _study_entered_by_age()
    record = Rec(birth="2008-09-10").cond("M33.10").qual("107563-9", True).lab("29463-7", 58, "kg").record()
    short, full = both(record, study, Catalog.load(None), S)
    check_pair(short, full, study)
    assert short["criteria"]["I1"]["passes_from"] == "2026-09-10" and "passes_from" not in short
    assert full["reason"].startswith("fails I1") and full["status"] == "ineligible"


@pytest.mark.parametrize(("entry", "message"), [
    ({"doc": "x", "criteria": ["E1"]}, "E1 must be an inclusion criterion a machine can decide"),
    ({"doc": "x", "criteria": ["I8"]}, "I8 must be an inclusion criterion a machine can decide"),
    ({"doc": "x", "criteria": ["E3a"]}, "'E3a' is not a top-level criterion"),
    ({"doc": "x", "criteria": []}, "entry_cohort needs 'criteria'"),
    ({"criteria": ["I2"]}, "entry_cohort needs 'criteria' (a list of criterion ids) and 'doc'"),
])
def test_bad_entry_criteria_are_named(entry: dict[str, Any], message: str) -> None:
    doc = orjson.loads(Path(load_study("NCT07377058").path).read_bytes())
    doc["entry_cohort"] = entry
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_study(doc, "bad")


def test_settings_overrides_keep_the_entry_cohort() -> None:
    study = load_study("NCT07377058").with_settings({"absent_records": "unknown"})
    assert study.entry == ("I2",)
    # absence never counts: Conditions without dermatomyositis no longer rule the patient out
    out = screen(Rec().cond("J84.10").record(), study, Catalog.load(None), S)
    assert out["cohort"] == "in" and out["criteria"]["I2"]["result"] == "unknown"


def test_cli_summary_counts_patients_out_by_criterion(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["screen", "--study", "NCT07377058", "--source", "sample", "--as-of", "2026-06-30", "--workers", "1",
            "--patient", "decoy-dm-mda5neg-noild", "--patient", "incl-i2-mda5neg", "--patient", "mda5-ild-01"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    lines = {d["patient"]: d for d in map(orjson.loads, out.splitlines())}
    assert [lines[f"Patient/{p}"]["cohort"] for p in argv[-5::2]] == ["out", "out", "in"]
    assert "fhir-adapter: out of the entry cohort: I2 2; ineligible, no other criterion evaluated" in err
    assert main([*argv, "--all-criteria"]) == 0
    out, err = capsys.readouterr()
    full = {d["patient"]: d for d in map(orjson.loads, out.splitlines())}
    assert {p: d["status"] for p, d in full.items()} == {p: d["status"] for p, d in lines.items()}
    assert all("E18" in d["criteria"] for d in full.values())
    assert "out of the entry cohort: I2 2; every criterion evaluated (--all-criteria)" in err
    assert main([*argv, "--format", "table"]) == 0
    rows = capsys.readouterr()[0].splitlines()
    decoy = next(r for r in rows if r.startswith("decoy-dm-mda5neg-noild "))
    assert decoy.split() == ["decoy-dm-mda5neg-noild", "SYN-decoy-dm-mda5neg-noild", "ineligible", "I2", "(out",
                             "of", "cohort)", "(not", "evaluated)"]


# -- a generated population ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def population(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2,000 synthetic patients (about 20% with dermatomyositis), gzipped NDJSON (~60 MB, ~25 s)."""
    if not GENERATOR.exists():
        pytest.skip("../shared/bench/gen_population.py is not beside the project")
    out = tmp_path_factory.mktemp("population") / "n2000"
    subprocess.run([sys.executable, str(GENERATOR), "2000", "--out", str(out), "--gzip"], check=True,
                   stdout=subprocess.DEVNULL, timeout=900)
    return out


def test_generated_population_statuses_are_the_full_evaluations(population: Path) -> None:
    """Every one of 2,000 generated patients, both studies: the same status with and without the entry cohort;
    most are out of it, ruled out by the entry criterion alone (I2, T1)."""
    studies, catalog = [load_study(sid) for sid in STUDIES], Catalog.load(None)
    as_of = date.fromisoformat(json.loads((population / "population.json").read_text())["ref_date"])
    counts = {(sid, cohort): 0 for sid in STUDIES for cohort in ("in", "out")}
    with open_source(str(population)) as source:
        for record in source.records():
            for study in studies:
                counts[study.id, check_pair(*both(record, study, catalog, as_of), study)] += 1
    for sid in STUDIES:
        assert counts[sid, "in"] + counts[sid, "out"] == 2000
        assert 1000 < counts[sid, "out"] < 2000 and counts[sid, "in"] > 100
