"""NCT04966884 (tofacitinib + glucocorticoids in anti-MDA5+ DM): screening from the study description.

The seed (shared/seeds/NCT04966884-tofacitinib.txt) has no registered eligibility criteria; T1/T2 are derived
from its population text (criteria-tables.md A.1). The regimen is the intervention, reported as information
only. Screening date S is 2026-06-30; each test names the seed line it checks.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import orjson
import pytest

from fhir_adapter.cli.main import main
from fhir_adapter.paths import sample_dir
from fhir_adapter.sources import open_source
from fhir_adapter.studies.definition import check_schema, load_study, parse_study, studies_dir
from fhir_adapter.studies.screen import screen
from fhir_adapter.terminology.catalog import Catalog
from tests.studies.helpers import SITE, Rec, S, result

SEED_AIM = "the treatment of anti-MDA5+ DM patients"
SEED_ADULT = "Criteria for clinical response for adult DM/polymyositis(PM)"
SEED_REGIMEN = "glucocorticoids (0.8mg-1mg/kg/day) and a combination with tofacitinib (at a dose of 5 mg twice daily)"
SEED_ILD = "Anti-MDA5+ DM patients complicated with ILD"
PREDNISONE, METHYLPRED, TOFACITINIB, BARICITINIB = "8640", "6902", "1357536", "2047232"


def run(rec: Rec, **settings: Any) -> dict[str, Any]:
    study = load_study("NCT04966884")
    if settings:
        study = study.with_settings(settings)
    return screen(rec.record(), study, Catalog.load(None), S, all_criteria=True)


def mda5_dm(birth: str = "1990-08-29", **patient: Any) -> Rec:
    """An adult with coded dermatomyositis (M33.10; M33.11 would also code respiratory involvement) and a positive
    anti-MDA5 (LOINC 107563-9)."""
    return Rec(birth=birth, **patient).cond("M33.10").qual("107563-9", True)


def gc(out: dict[str, Any]) -> dict[str, Any]:
    return out["information"]["GC-dose"]


# --- the study file ------------------------------------------------------------------------------------------
def test_study_file_is_valid_and_marks_criteria_as_derived() -> None:
    """No registered criteria (clinical.md §2.1): T ids only, each with its seed line and a 'derived' source,
    and the file says the registered criteria are to be added as data (I1.., E1..)."""
    doc = orjson.loads((studies_dir() / "NCT04966884.json").read_bytes())
    check_schema(doc, "NCT04966884")
    study = load_study("tofacitinib")
    assert study.id == "NCT04966884" and [c.id for c in study.criteria] == ["T1", "T2"]
    for c in study.criteria:
        assert c.source and c.source.startswith("derived from the study description")
    assert SEED_AIM in study.criteria[0].protocol and SEED_ADULT.replace("(PM)", "") in study.criteria[1].protocol
    assert any("I1.., E1.." in n and "no code change" in n for n in doc["notes"])
    assert any("ILD is NOT a criterion" in n for n in doc["notes"])
    assert [i.id for i in study.information] == ["GC-dose", "JAKi", "ILD"]


def test_unknown_information_rule_is_a_config_error() -> None:
    """The study file names information rules by name; a typo is caught when the file is loaded."""
    doc = orjson.loads((studies_dir() / "NCT04966884.json").read_bytes())
    doc["information"][0]["rule"] = "no_such_rule"
    with pytest.raises(Exception, match="unknown information rule"):
        parse_study(doc, "bad")


# --- T2: adult -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("birth", "want", "status"), [
    ("1990-08-29", "met", "candidate"), ("1946-01-01", "met", "candidate"),  # no upper age
    ("2008-06-30", "met", "candidate"),  # exactly 18 on the screening date
    ("2008-07-01", "not-met", "ineligible"),  # 17, 18 tomorrow
])
def test_t2_adult(birth: str, want: str, status: str) -> None:
    """T2 from "Criteria for clinical response for adult DM/polymyositis(PM)": age ≥ 18 at S; no upper bound
    and no weight floor (no weight on file here)."""
    out = run(mda5_dm(birth))
    assert result(out, "T2") == want and out["status"] == status
    assert "body weight" not in out["criteria"]["T2"]["reason"]
    assert out["criteria"]["T2"]["source"].startswith("derived from the study description")
    if want == "not-met":
        assert out["criteria"]["T2"]["passes_from"] == "2026-07-01" and out["passes_from"] == "2026-07-01"


def test_t2_no_birth_date_is_unknown() -> None:
    """T2 ("adult"): no birth date leaves it unknown, never assumed adult."""
    out = run(Rec(birth="").cond("M33.11").qual("107563-9", True))
    assert result(out, "T2") == "unknown" and out["status"] == "potential-candidate"


# --- T1: anti-MDA5+ DM ---------------------------------------------------------------------------------------
def test_t1_anti_mda5_dm() -> None:
    """T1 from "the treatment of anti-MDA5+ DM patients": coded DM and a positive anti-MDA5; no skin sign is
    asked for (the seed names none), so no review flag for it."""
    out = run(mda5_dm())
    assert result(out, "T1") == "met" and out["status"] == "candidate"
    assert "needs_review" not in out["criteria"]["T1"]
    assert set(out["criteria"]["T1"]["evidence"]) >= {"Condition/con1", "Observation/obs2"}


@pytest.mark.parametrize(("rec", "want", "status"), [
    (Rec().cond("M33.11").qual("107563-9", False), "not-met", "ineligible"),  # anti-MDA5 negative
    (Rec().cond("M33.11"), "unknown", "potential-candidate"),  # untested
    (Rec().cond("M06.9").qual("107563-9", True), "not-met", "ineligible"),  # positive, DM not coded
    (Rec().qual("107563-9", True), "unknown", "potential-candidate"),  # no Condition records at all
])
def test_t1_negative_untested_or_not_dm(rec: Rec, want: str, status: str) -> None:
    """T1 ("anti-MDA5+ DM patients"): negative antibody fails; untested is unknown; a positive antibody without a
    coded DM (among other Conditions) fails, flagged; without any Condition record it cannot be ruled out."""
    out = run(rec)
    assert result(out, "T1") == want and out["status"] == status
    if want == "unknown":
        assert out["criteria"]["T1"]["to_resolve"]


def test_t1_dm_absence_policy() -> None:
    """absent_records=unknown: a DM diagnosis missing among other Conditions is unknown, not a failure."""
    out = run(Rec().cond("M06.9").qual("107563-9", True), absent_records="unknown")
    assert result(out, "T1") == "unknown"


# --- ILD: reported, not screened -----------------------------------------------------------------------------
def test_ild_present_or_absent_makes_no_difference() -> None:
    """"Anti-MDA5+ DM patients complicated with ILD" (and those without): ILD is information only."""
    without = run(mda5_dm())
    with_ild = run(mda5_dm().cond("J84.10"))
    assert without["status"] == with_ild["status"] == "candidate"
    assert {k: v["result"] for k, v in without["criteria"].items()} == \
        {k: v["result"] for k, v in with_ild["criteria"].items()} == {"T1": "met", "T2": "met"}
    assert run(Rec().cond("M33.11").qual("107563-9", True))["information"]["ILD"]["present"] is True  # DM with ILD
    assert with_ild["information"]["ILD"]["present"] is True
    assert with_ild["information"]["ILD"]["sources"]
    assert without["information"]["ILD"]["present"] is False
    assert SEED_ILD in with_ild["information"]["ILD"]["protocol"]


# --- information: the glucocorticoid dose --------------------------------------------------------------------
def test_gc_dose_in_regimen_range() -> None:
    """Regimen "glucocorticoids (0.8mg-1mg/kg/day)": prednisone 50 mg/day at 60 kg = 0.833 mg/kg/day, in range;
    weight, its date and the sources reported."""
    out = run(mda5_dm().lab("29463-7", 60, "kg").drug(PREDNISONE, -20, mg=50))
    info = gc(out)
    assert info["prednisone_equivalent_mg_per_day"] == 50 and info["mg_per_kg_per_day"] == pytest.approx(0.833)
    assert info["in_regimen_range"] is True and info["complete"] is True
    assert info["weight"]["kg"] == 60 and info["weight"]["date"] == "2026-06-27"
    assert info["weight"]["source"].startswith("Observation/") and info["sources"][0].startswith("MedicationSt")
    assert info["regimen_mg_per_kg_per_day"] == [0.8, 1.0] and SEED_REGIMEN in info["protocol"]
    assert out["status"] == "candidate"


def test_gc_dose_outside_range_is_still_only_information() -> None:
    """Regimen "(0.8mg-1mg/kg/day)": 70 mg/day at 60 kg = 1.17 mg/kg/day, outside; the status is unchanged."""
    out = run(mda5_dm().lab("29463-7", 60, "kg").drug(PREDNISONE, -20, mg=70))
    assert gc(out)["mg_per_kg_per_day"] == pytest.approx(1.167) and gc(out)["in_regimen_range"] is False
    assert out["status"] == "candidate" and "GC-dose" not in out["criteria"]


def test_gc_dose_methylprednisolone_converted() -> None:
    """"glucocorticoids" (any): methylprednisolone 40 mg/day = 50 mg prednisone-equivalent (x1.25) = 0.833."""
    info = gc(run(mda5_dm().lab("29463-7", 60, "kg").drug(METHYLPRED, -10, mg=40)))
    assert info["prednisone_equivalent_mg_per_day"] == 50 and info["mg_per_kg_per_day"] == pytest.approx(0.833)
    assert info["drugs"][0]["drug"] == "methylprednisolone" and info["drugs"][0]["prednisone_factor"] == 1.25


def test_gc_dose_without_weight() -> None:
    """"(0.8mg-1mg/kg/day)" needs a weight: without one mg/kg/day is null, with the reason; mg/day still given."""
    info = gc(run(mda5_dm().drug(PREDNISONE, -20, mg=50)))
    assert info["prednisone_equivalent_mg_per_day"] == 50 and info["mg_per_kg_per_day"] is None
    assert info["in_regimen_range"] is None and info["weight"] is None and "no body weight" in info["reason"]


def test_gc_dose_none_or_unknown() -> None:
    """Regimen glucocorticoids: none active on S (a course that ended) is 0; no medication records: unknown."""
    stopped = gc(run(mda5_dm().drug(PREDNISONE, -100, -50, mg=50)))
    assert stopped["prednisone_equivalent_mg_per_day"] == 0 and stopped["in_regimen_range"] is False
    assert "no systemic glucocorticoid active" in stopped["reason"]
    nothing = gc(run(mda5_dm()))
    assert nothing["prednisone_equivalent_mg_per_day"] is None and "no medication records" in nothing["reason"]


def test_gc_dose_without_daily_dose_is_incomplete() -> None:
    """Regimen glucocorticoids: a prednisone statement without a dose gives no number and says why."""
    info = gc(run(mda5_dm().lab("29463-7", 60, "kg").drug(PREDNISONE, -20)))
    assert info["complete"] is False and info["missing"] and info["in_regimen_range"] is None
    assert "lower bound" in info["reason"]


# --- information: JAK inhibitors -----------------------------------------------------------------------------
def test_jak_inhibitor_past_and_current() -> None:
    """"a combination with tofacitinib" (JAK inhibitors): a past tofacitinib course and a current baricitinib,
    each with dates, current or not, and the source; the status is unchanged."""
    rec = mda5_dm().drug(TOFACITINIB, -300, -120, mg=5, per_day=2).drug(BARICITINIB, -30, mg=4)
    out = run(rec)
    info = out["information"]["JAKi"]
    drugs = {d["drug"]: d for d in info["drugs"]}
    assert drugs["tofacitinib"]["current"] is False and drugs["tofacitinib"]["timing"] == "past"
    assert drugs["tofacitinib"]["start"] == "2025-09-03" and drugs["tofacitinib"]["end"] == "2026-03-02"
    assert drugs["tofacitinib"]["mg_per_day"] == 10
    assert drugs["baricitinib"]["current"] is True and drugs["baricitinib"]["end"] is None
    assert info["any"] is True and info["current"] is True and len(info["sources"]) == 2
    assert out["status"] == "candidate"


def test_no_jak_inhibitor() -> None:
    """JAK-inhibitor use: none among the medication records is 'no'; no medication records at all: unknown."""
    assert run(mda5_dm().drug(PREDNISONE, -20, mg=50))["information"]["JAKi"]["any"] is False
    assert run(mda5_dm())["information"]["JAKi"]["any"] is None


def test_status_never_depends_on_information() -> None:
    """The regimen is the intervention, not an entry criterion: the same record with any GC dose, any JAK
    inhibitor, ILD or not, gives the same criteria results and status."""
    base = run(mda5_dm())
    variants = [mda5_dm().lab("29463-7", 60, "kg").drug(PREDNISONE, -20, mg=200),
                mda5_dm().drug(TOFACITINIB, -10, mg=5, per_day=2).cond("J84.10"),
                mda5_dm().drug(METHYLPRED, -3, mg=1000, route="47625008")]
    for rec in variants:
        out = run(rec)
        assert out["status"] == base["status"]
        assert {k: v["result"] for k, v in out["criteria"].items()} == \
            {k: v["result"] for k, v in base["criteria"].items()}


def test_deceased_is_ineligible_with_information() -> None:
    """Deceased by S: ineligible whatever T1/T2 say (as PROMIS-MDA5); information is still reported."""
    out = run(mda5_dm(deceasedDateTime="2026-05-01"))
    assert out["status"] == "ineligible" and "deceased" in out["reason"] and "information" in out


def test_promis_output_has_no_information_block() -> None:
    """PROMIS-MDA5 defines no information items: its output shape is unchanged."""
    out = screen(Rec().record(), load_study("NCT07377058"), Catalog.load(None), S)
    assert "information" not in out and all("source" not in c for c in out["criteria"].values())


# --- the sample ----------------------------------------------------------------------------------------------
def _sample(all_criteria: bool) -> dict[str, dict[str, Any]]:
    study, catalog = load_study("NCT04966884"), Catalog.load(SITE)
    with open_source("sample") as source:
        return {r.patient_id: screen(r, study, catalog, date(2026, 6, 30), all_criteria=all_criteria)
                for r in source.records()}


@pytest.fixture(scope="module")
def sample() -> dict[str, dict[str, Any]]:
    return _sample(False)


@pytest.fixture(scope="module")
def sample_all() -> dict[str, dict[str, Any]]:
    return _sample(True)


def test_sample_tofacitinib_starters(sample: dict[str, dict[str, Any]]) -> None:
    """"the treatment of anti-MDA5+ DM patients": every tofa-* patient (anti-MDA5+ DM on tofacitinib) is a
    candidate or potential candidate with T1 met; each has tofacitinib reported as current since its baseline."""
    scenarios = orjson.loads((sample_dir() / "scenarios.json").read_bytes())
    baselines = scenarios["tofacitinib"]["baseline_dates"]
    tofa = [p for p in scenarios["patients"] if p["id"].startswith("tofa-")]
    assert len(tofa) == len(baselines) >= 10
    for p in tofa:
        out = sample[p["id"]]
        assert out["status"] in ("candidate", "potential-candidate"), (p["id"], out["reason"])
        assert result(out, "T1") == p["expected"]["T1"] == "met"
        jak = out["information"]["JAKi"]
        assert jak["current"] is True, p["id"]
        assert baselines[p["id"]] in {d["start"] for d in jak["drugs"] if d["drug"] == "tofacitinib"}, p["id"]
        assert gc(out)["prednisone_equivalent_mg_per_day"] is not None


def test_sample_decoy_ra_tofacitinib(sample: dict[str, dict[str, Any]],
                                     sample_all: dict[str, dict[str, Any]]) -> None:
    """"anti-MDA5+ DM patients": rheumatoid arthritis on tofacitinib is not one: out of the entry cohort by T1,
    ineligible, nothing else evaluated; with every criterion, its current tofacitinib is reported, never used."""
    out = sample["decoy-ra-tofacitinib"]
    assert out["status"] == "ineligible" and out["cohort"] == "out" and result(out, "T1") == "not-met"
    assert out["reason"].startswith("out of the entry cohort by T1") and "information" not in out
    full = sample_all["decoy-ra-tofacitinib"]
    assert full["status"] == "ineligible" and full["cohort"] == "out" and full["reason"] == "fails T1"
    assert full["information"]["JAKi"]["current"] is True


def test_sample_every_patient_has_the_shape(sample: dict[str, dict[str, Any]],
                                            sample_all: dict[str, dict[str, Any]]) -> None:
    """Same result shape as PROMIS-MDA5: status, cohort, reason, review, criteria T1/T2 (+ information); out of
    the entry cohort, T1 alone."""
    assert {o["cohort"] for o in sample.values()} == {"in", "out"}
    for short, out in [*((True, o) for o in sample.values()), *((False, o) for o in sample_all.values())]:
        assert out["status"] in ("ineligible", "potential-candidate", "candidate") and out["reason"]
        if short and out["cohort"] == "out":
            assert set(out["criteria"]) == {"T1"} and "information" not in out
        else:
            assert set(out["criteria"]) == {"T1", "T2"} and set(out["information"]) == {"GC-dose", "JAKi", "ILD"}
        for c in out["criteria"].values():
            assert c["result"] in ("met", "not-met", "unknown") and c["protocol"] and c["source"]
        for item in out.get("information", {}).values():
            assert item["summary"] and item["protocol"] and "error" not in item


# --- the command ---------------------------------------------------------------------------------------------
def test_cli_jsonl_and_table(capsys: pytest.CaptureFixture[str]) -> None:
    """``screen --study NCT04966884`` / ``--study tofacitinib``: JSON lines with the information block, and a
    table naming T1 for the decoy ("anti-MDA5+ DM patients")."""
    argv = ["screen", "--source", "sample", "--as-of", "2026-06-30", "--workers", "1",
            "--patient", "tofa-responder-major", "--patient", "decoy-ra-tofacitinib"]
    assert main([*argv, "--study", "NCT04966884"]) == 0
    out, err = capsys.readouterr()
    lines = {d["patient"]: d for d in map(orjson.loads, out.splitlines())}
    major = lines["Patient/tofa-responder-major"]
    assert major["study"] == "NCT04966884" and major["status"] in ("candidate", "potential-candidate")
    assert major["information"]["JAKi"]["current"] is True and "NCT04966884 as of 2026-06-30" in err
    assert main([*argv, "--study", "tofacitinib", "--format", "table"]) == 0
    rows = capsys.readouterr()[0].splitlines()
    assert rows[0].startswith("patient") and "information" in rows[0] and len(rows) == 3
    decoy = next(r for r in rows if "decoy-ra-tofacitinib" in r)
    assert "ineligible" in decoy and " T1 (out of cohort) " in decoy and "| (not evaluated)" in decoy
    assert "{" not in "".join(rows)
    assert main([*argv, "--study", "tofacitinib", "--format", "table", "--all-criteria"]) == 0
    decoy = next(r for r in capsys.readouterr()[0].splitlines() if "decoy-ra-tofacitinib" in r)
    assert "ineligible" in decoy and " T1 " in decoy and "JAKi: tofacitinib current" in decoy
