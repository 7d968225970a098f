"""Possible matches: a record whose code maps to no concept but whose name says it may be what a criterion looks
for never lets that criterion conclude from absence; it becomes unknown and says which code to map. Text alone
never makes a criterion met. Small hand-made records (screening date S = 2026-06-30)."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from fhir_adapter.studies.definition import load_study
from fhir_adapter.studies.lookback import NEVER, prefilter
from fhir_adapter.terminology.catalog import Catalog
from tests.studies.helpers import SCT, Rec, day, result

FORMULARY = "http://hospital.example.cn/CodeSystem/formulary"
LAB = "http://hospital.example.cn/CodeSystem/lab"
DX = "http://hospital.example.cn/CodeSystem/diagnosis"
ORAL, IV = "26643006", "47625008"


def local_drug(rec: Rec, code: str, display: str, start: int = -60, route: str = ORAL, mg: float | None = 5,
               text: str | None = None, coded: bool = True) -> Rec:
    cc: dict[str, Any] = {"coding": [{"system": FORMULARY, "code": code, "display": display}]} if coded else {}
    if text:
        cc["text"] = text
    dosage: dict[str, Any] = {"route": {"coding": [{"system": SCT, "code": route}]},
                              "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}}}
    if mg is not None:
        dosage["doseAndRate"] = [{"doseQuantity": {"value": mg, "unit": "mg", "system": "http://unitsofmeasure.org",
                                                   "code": "mg"}}]
    return rec.add("MedicationStatement", {"status": "active", "medicationCodeableConcept": cc,
                                           "effectivePeriod": {"start": day(start)}, "dosage": [dosage]})


def omeprazole(rec: Rec) -> Rec:
    return rec.drug("7646", -60)  # RxNorm omeprazole: a drug record no criterion looks for


def site(tmp_path: Path, **doc: Any) -> Path:
    path = tmp_path / "site.json"
    path.write_text(json.dumps({"site": "Test hospital", **doc}, ensure_ascii=False), encoding="utf-8")
    return path


def crit(out: dict[str, Any], cid: str) -> dict[str, Any]:
    return out["criteria"][cid]


def test_local_glucocorticoid_and_cni_codes_make_i4_and_i5_unknown_not_failed(tmp_path):
    """The sample's mda5-ild-02-local without its site file: prednisone and tacrolimus under local formulary codes
    whose names are Chinese. Before: I4 and I5 not met ("no glucocorticoid among 3 medication records")."""
    rec = local_drug(local_drug(omeprazole(Rec()), "YP-0107", "醋酸泼尼松片 5mg", mg=35),
                     "YP-0231", "他克莫司胶囊 1mg", mg=1)
    out = rec.screen()
    i4, i5 = crit(out, "I4"), crit(out, "I5")
    assert i4["result"] == "unknown" and i5["result"] == "unknown"
    assert i4["to_resolve"] == (f"map {FORMULARY}|YP-0107 '醋酸泼尼松片 5mg' (possibly prednisone) in the site file, "
                                "or list it under ignore")
    assert f"{FORMULARY}|YP-0231 '他克莫司胶囊 1mg' (possibly tacrolimus)" in i5["to_resolve"]
    assert "MedicationStatement/med2" in i4["evidence"] and "MedicationStatement/med3" in i5["evidence"]
    assert i4["details"]["unmapped_turned"] == "not-met"
    assert result(out, "E12") == "unknown"  # "no glucocorticoid" excluded nothing either
    assert result(out, "E14.2") == "not-met"  # neither record may be a JAK inhibitor: no possible match there
    # once the site maps the two codes, the same records decide
    mapped = site(tmp_path, codes=[{"concept": "prednisone", "system": FORMULARY, "code": "YP-0107"},
                                   {"concept": "tacrolimus", "system": FORMULARY, "code": "YP-0231"}])
    out = rec.screen(mapped)
    assert "unmapped" not in json.dumps(out)
    assert result(out, "I5") == "met"  # 1 mg/day every day of the 4 weeks


def test_an_ignored_code_stops_counting(tmp_path):
    rec = local_drug(omeprazole(Rec()), "YP-0107", "醋酸泼尼松片 5mg")
    assert result(rec.screen(), "I4") == "unknown"
    ignored = site(tmp_path, ignore=[{"system": FORMULARY, "code": "YP-0107", "note": "eye drops, not systemic"}])
    out = rec.screen(ignored)
    assert result(out, "I4") == "not-met" and "YP-0107" not in json.dumps(out)


def test_a_site_name_makes_a_possible_match(tmp_path):
    rec = local_drug(omeprazole(Rec()), "YP-9001", "Pred-X 5 mg tablet")
    assert result(rec.screen(), "I4") == "not-met"  # no name says glucocorticoid
    named = site(tmp_path, names={"prednisone": ["Pred-X"]})
    out = rec.screen(named)
    assert result(out, "I4") == "unknown"
    assert f"{FORMULARY}|YP-9001 'Pred-X 5 mg tablet' (possibly prednisone)" in crit(out, "I4")["to_resolve"]


def test_text_alone_never_makes_an_exclusion_met():
    """An unmapped tofacitinib taken now: E14.2 (JAK inhibitor within 2 weeks) is unknown, never met."""
    rec = local_drug(Rec(), "YP-0415", "枸橼酸托法替布片 5mg", start=-20)
    e14 = crit(rec.screen(), "E14.2")
    assert e14["result"] == "unknown" and "possibly tofacitinib" in e14["to_resolve"]


def test_a_record_with_only_a_text_is_for_a_person():
    rec = local_drug(omeprazole(Rec()), "", "", coded=False, text="prednisone 5 mg tablets")
    i4 = crit(rec.screen(), "I4")
    assert i4["result"] == "unknown"
    assert "holds only the text 'prednisone 5 mg tablets' (possibly prednisone): a person reads it" in i4["to_resolve"]


def test_a_later_unmapped_use_reopens_a_drug_before_the_window():
    """E14.1 rituximab 6 months: a mapped dose a year ago is before the window, but a later record coded locally
    as 利妥昔单抗 may be inside it."""
    rec = Rec().drug("121191", -365, -365, rtype="MedicationAdministration")
    assert result(rec.screen(), "E14.1") == "not-met"
    local_drug(rec, "YP-0777", "利妥昔单抗注射液 100mg", start=-30, route=IV)
    assert result(rec.screen(), "E14.1") == "unknown"


def test_iv_antibiotics_only_from_records_given_iv():
    """E4 counts intravenous antibiotics only: an unmapped oral co-trimoxazole is not a possible IV antibiotic."""
    rec = local_drug(omeprazole(Rec()), "YP-0562", "复方磺胺甲噁唑片", start=-10)
    rec.add("Encounter", {"status": "finished", "class": {"code": "AMB"}, "period": {"start": day(-30)}})
    assert result(rec.screen(), "E4") == "not-met"
    local_drug(rec, "YP-0801", "注射用头孢曲松钠 1g", start=-5, route=IV, mg=1000)
    e4 = crit(rec.screen(), "E4")
    assert e4["result"] == "unknown" and "YP-0801" in e4["to_resolve"]


def test_unmapped_diagnoses_count_only_where_a_mapped_one_would():
    """E16 current pregnancy: an unmapped pregnancy two years ago (abated) is no possible match; a current one is."""
    rec = Rec().cond("M33.10")
    rec.add("Condition", {"code": {"coding": [{"system": DX, "code": "O-09", "display": "妊娠"}]},
                          "onsetDateTime": day(-800), "abatementDateTime": day(-530)})
    assert result(rec.screen(), "E16") == "not-met"
    rec.add("Condition", {"code": {"coding": [{"system": DX, "code": "O-10", "display": "早孕"}]},
                          "onsetDateTime": day(-40)})
    e16 = crit(rec.screen(), "E16")
    assert e16["result"] == "unknown" and f"{DX}|O-10" in e16["to_resolve"] and "O-09" not in e16["to_resolve"]


def test_exclusion_diagnosis_coded_locally():
    """E17 malignancy: a local diagnosis code 肺腺癌 (lung adenocarcinoma) makes "no malignancy" unknown."""
    rec = Rec().cond("M33.10")
    assert result(rec.screen(), "E17") == "not-met"
    rec.add("Condition", {"code": {"coding": [{"system": DX, "code": "C-34", "display": "肺腺癌"}]},
                          "onsetDateTime": day(-200)})
    assert result(rec.screen(), "E17") == "unknown"


def test_a_newer_unmapped_result_is_pointed_at_but_never_read():
    """E3a WBC: the mapped WBC 10 days ago (normal) decides; a newer one under a local code (2.1, below the limit)
    cannot be read as WBC, so the result stays not met, flagged for review with the code to map. With no mapped
    result at all, the unknown says which code to map."""
    rec = Rec().lab("6690-2", 6.0, "10*9/L", offset=-10)
    rec.add("Observation", {"status": "final", "code": {"coding": [{"system": LAB, "code": "X-WBC",
                                                                    "display": "白细胞计数"}]},
                            "effectiveDateTime": day(-2), "valueQuantity": {"value": 2.1, "unit": "10*9/L"}})
    e3a = crit(rec.screen(), "E3a")
    assert e3a["result"] == "not-met" and e3a["needs_review"] is True
    assert f"{LAB}|X-WBC '白细胞计数'" in e3a["reason"]
    unmapped = rec.res["Observation"].pop(1)
    unmapped["effectiveDateTime"] = day(-20)  # older than the mapped one: changes nothing
    rec.res["Observation"].append(unmapped)
    e3a = crit(rec.screen(), "E3a")
    assert e3a["result"] == "not-met" and "needs_review" not in e3a and "details" not in e3a
    rec.res["Observation"].pop(0)  # only the unmapped one left
    e3a = crit(rec.screen(), "E3a")
    assert e3a["result"] == "unknown" and e3a["to_resolve"].startswith(f"map {LAB}|X-WBC")
    assert e3a["evidence"] == ["Observation/obs2"]


def test_prefilter_keeps_unmapped_observations_whose_names_say_what_they_are():
    """The population prefilter skips Observations no criterion reads; one whose code maps to nothing but whose
    display names body weight (read 90 days back) must stay, or its possible match would never be seen."""
    study, catalog = load_study("NCT07377058"), Catalog.load()
    first_read = prefilter(study, catalog, date(2026, 6, 30))[0]._first_read  # type: ignore[index]
    assert first_read([{"system": LAB, "code": "VS-WT", "display": "体重"}]) == "2026-04-01"
    assert first_read([{"system": LAB, "code": "X-1", "display": "尿比重"}]) == NEVER
    assert first_read([{"system": LAB, "code": "IMM-MDA5", "display": "抗MDA5抗体"}]) is None  # read whole


@pytest.mark.parametrize("absent_records", ["absent-when-type-held", "unknown"])
def test_an_unknown_absence_gains_the_code_to_map(absent_records):
    rec = local_drug(omeprazole(Rec()), "YP-0231", "他克莫司胶囊 1mg", mg=1)
    i5 = crit(rec.screen(absent_records=absent_records), "I5")
    assert i5["result"] == "unknown" and "YP-0231" in i5["to_resolve"]


def test_information_items_report_possible_matches():
    rec = Rec(pid="t1")
    local_drug(omeprazole(rec), "YP-0415", "枸橼酸托法替布片 5mg", start=-20)
    from fhir_adapter.studies.screen import screen

    out = screen(rec.record(), load_study("NCT04966884"), Catalog.load(), date(2026, 6, 30))
    jak = out["information"]
    item = next(v for v in jak.values() if "unmapped" in v and "tofacitinib" in json.dumps(v["unmapped"]))
    assert item.get("any") is None or item.get("current") is None
