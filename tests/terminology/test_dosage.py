"""Daily doses from FHIR Dosage shapes (criteria-tables.md "Glucocorticoid dose"). Each case shows its arithmetic."""

from __future__ import annotations

import pytest

from fhir_adapter.terminology.dosage import (
    Strength,
    daily_dose,
    frequency,
    route_of,
    strength_from_ratio,
    strengths_from_text,
    text_daily_dose,
)
from fhir_adapter.terminology.units import UCUM

SCT = "http://snomed.info/sct"


def mg(value: float, unit: str = "mg") -> dict:
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


def dosage(dose: dict | None = None, repeat: dict | None = None, code: str | None = None, **extra) -> dict:
    d: dict = dict(extra)
    if dose is not None:
        d["doseAndRate"] = [{"doseQuantity": dose}]
    timing: dict = {}
    if repeat is not None:
        timing["repeat"] = repeat
    if code is not None:
        timing["code"] = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-GTSAbbreviation",
                                      "code": code}]}
    if timing:
        d["timing"] = timing
    return d


def test_dose_quantity_times_frequency_per_period() -> None:
    # tofacitinib 5 mg, frequency 2 per 1 d: 5 x 2 = 10 mg/day
    d = daily_dose([dosage(mg(5), {"frequency": 2, "period": 1, "periodUnit": "d"})])
    assert (d.mg_per_day, d.dose_mg, d.per_day, d.interval_days) == (10, 5, 2, 0.5)
    assert d.reason is None and not d.from_text


def test_every_twelve_hours() -> None:
    # 1 mg every 12 h: 24 / 12 = 2 a day, 1 x 2 = 2 mg/day
    assert daily_dose([dosage(mg(1), {"frequency": 1, "period": 12, "periodUnit": "h"})]).mg_per_day == \
        pytest.approx(2.0)


def test_grams_and_micrograms() -> None:
    # 1 g daily = 1000 mg/day; 500 ug daily = 0.5 mg/day
    assert daily_dose([dosage(mg(1, "g"), code="QD")]).mg_per_day == pytest.approx(1000)
    assert daily_dose([dosage({"value": 500, "unit": "\u03bcg"}, code="QD")]).mg_per_day == pytest.approx(0.5)


def test_timing_code_bid() -> None:
    # prednisone 10 mg BID: 10 x 2 = 20 mg/day
    assert daily_dose([dosage(mg(10), code="BID")]).mg_per_day == 20


@pytest.mark.parametrize(
    ("code", "per_day"), [("QD", 1), ("BID", 2), ("TID", 3), ("QID", 4), ("Q12H", 2), ("Q8H", 3), ("QOD", 0.5),
                          ("QW", 1 / 7)]
)
def test_timing_code_table(code: str, per_day: float) -> None:
    assert frequency({"code": {"coding": [{"code": code}]}}).per_day == pytest.approx(per_day)


def test_frequency_max_gives_a_high() -> None:
    # 5 mg 1-2 times a day: 5 x 1 = 5 mg/day, up to 5 x 2 = 10
    d = daily_dose([dosage(mg(5), {"frequency": 1, "frequencyMax": 2, "period": 1, "periodUnit": "d"})])
    assert (d.mg_per_day, d.mg_per_day_high) == (5, 10)


def test_dose_range_low_and_high() -> None:
    # 20-40 mg once daily: low 20, high 40 mg/day
    d = daily_dose([{"doseAndRate": [{"doseRange": {"low": mg(20), "high": mg(40)}}],
                     "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}}}])
    assert (d.mg_per_day, d.mg_per_day_high) == (20, 40)
    assert "dose range" in d.notes


def test_weekly_methotrexate_is_averaged_per_day() -> None:
    # methotrexate 15 mg once a week: 15 / 7 = 2.142857 mg/day (averaged over the cycle), 15 mg/week kept
    d = daily_dose([dosage(mg(15), {"frequency": 1, "period": 1, "periodUnit": "wk"})])
    assert d.mg_per_day == pytest.approx(15 / 7)
    assert (d.interval_days, d.mg_per_week, d.dose_mg) == (7, 15, 15)


def test_alternate_day_prednisone() -> None:
    # 20 mg every other day (QOD): 20 / 2 = 10 mg/day averaged
    d = daily_dose([dosage(mg(20), code="QOD")])
    assert (d.mg_per_day, d.interval_days) == (10, 2)


def test_concurrent_dosages_add_up() -> None:
    # 10 mg in the morning + 5 mg in the evening = 15 mg/day
    d = daily_dose([dosage(mg(10), code="QAM"), dosage(mg(5), code="QPM")])
    assert d.mg_per_day == 15


def test_one_tablet_times_strength() -> None:
    # 1 tablet BID of prednisone 5 mg tablets: 1 x 5 mg x 2 = 10 mg/day
    d = daily_dose([dosage({"value": 1, "unit": "tablet", "system": UCUM, "code": "{tbl}"}, code="BID")],
                   Strength(5))
    assert d.mg_per_day == 10
    # "TAB" (v3 orderableDrugForm code) is a tablet too: 2 TAB daily x 5 mg = 10 mg/day
    d = daily_dose([dosage({"value": 2, "code": "TAB"}, code="QD")], Strength(5))
    assert d.mg_per_day == 10


def test_tablets_without_strength_is_a_reason() -> None:
    d = daily_dose([dosage({"value": 1, "unit": "tablet"}, code="BID")])
    assert d.mg_per_day is None
    assert d.reason.startswith("dose in 'tablet' but no strength")


def test_volume_dose_with_concentration() -> None:
    # rituximab 500 mg/50 mL = 10 mg/mL; 50 mL given once = 500 mg
    d = daily_dose([{"dose": {"value": 50, "unit": "mL", "system": UCUM, "code": "mL"}}], Strength(500, "mL", 50),
                   single=True)
    assert d.mg_per_day == pytest.approx(500)


def test_strength_from_ratio_and_from_text() -> None:
    # 400 mg per 1 tablet
    ratio = {"numerator": mg(400), "denominator": {"value": 1, "unit": "tablet", "code": "TAB"}}
    assert strength_from_ratio(ratio) == Strength(400)
    # 0.5 g per 1 tablet = 500 mg
    assert strength_from_ratio({"numerator": mg(0.5, "g"), "denominator": {"value": 1, "code": "{tbl}"}}) == \
        Strength(500)
    found = strengths_from_text("sulfamethoxazole 400 MG / trimethoprim 80 MG Oral Tablet")
    assert found == [("sulfamethoxazole", Strength(400)), ("trimethoprim", Strength(80))]
    assert strengths_from_text("prednisone 5 MG Oral Tablet") == [("prednisone", Strength(5))]
    assert strengths_from_text("rituximab 500 mg/50 mL injection") == [("rituximab", Strength(500, "mL", 50))]


@pytest.mark.parametrize(
    ("text", "mg_day"),
    [
        ("5mg bid", 10),  # 5 x 2
        ("\u6cfc\u5c3c\u677e 30mg qd", 30),  # prednisone 30 mg once daily: 30 x 1
        ("tofacitinib 5 mg twice daily", 10),  # 5 x 2
        ("methylprednisolone 8 mg tid", 24),  # 8 x 3
        ("\u6cfc\u5c3c\u677e 10mg \u6bcf\u65e5\u4e24\u6b21", 20),  # 10 mg, twice a day: 10 x 2
        ("prednisone 20 mg every other day", 10),  # 20 / 2
        ("MTX 15 mg weekly", 15 / 7),  # 15 / 7
        ("10 mg 3 times daily", 30),  # 10 x 3
    ],
)
def test_text_only_dosage(text: str, mg_day: float) -> None:
    d = daily_dose([{"text": text}])
    assert d.mg_per_day == pytest.approx(mg_day)
    assert d.from_text and "from dosage text" in d.notes


def test_text_tablets_with_strength() -> None:
    # "1 tablet daily" of SMX 400 mg: 1 x 400 x 1 = 400 mg/day
    assert text_daily_dose("1 tablet daily", Strength(400)).mg_per_day == 400


def test_structured_dose_with_frequency_only_in_text() -> None:
    # doseQuantity 5 mg, no timing, text "5 mg bid": 5 x 2 = 10, frequency flagged as from text
    d = daily_dose([{"text": "5 mg bid", "doseAndRate": [{"doseQuantity": mg(5)}]}])
    assert d.mg_per_day == 10 and "frequency from dosage text" in d.notes


@pytest.mark.parametrize(
    ("dosages", "reason"),
    [
        ([], "no dosage"),
        ([{"text": "as directed"}], "no dose; dosage text 'as directed': no dose"),
        ([dosage(mg(5))], "no timing: cannot derive a daily dose"),
        ([dosage({"value": 2, "unit": "mg/kg", "system": UCUM, "code": "mg/kg"}, code="QD")],
         "weight-based dose 2 mg/kg needs the dosing weight"),
        ([dosage({"value": 5, "unit": "puffs"}, code="BID")], "dose unit 'puffs' cannot be converted to mg"),
        ([dosage({"value": 5}, code="BID")], "dose without a unit"),
        ([{"text": "prednisone 30mg"}], "no dose; dosage text 'prednisone 30mg': no frequency"),
    ],
)
def test_missing_dose_is_none_with_a_reason(dosages: list, reason: str) -> None:
    d = daily_dose(dosages)
    assert d.mg_per_day is None
    assert d.reason == reason


def test_as_needed_is_flagged() -> None:
    d = daily_dose([dosage(mg(5), code="QD", asNeededBoolean=True)])
    assert d.as_needed and d.mg_per_day == 5


def test_single_administration() -> None:
    # MedicationAdministration.dosage.dose: methylprednisolone 500 mg that day = 500 mg/day
    d = daily_dose([{"dose": mg(500), "route": {"coding": [{"system": SCT, "code": "47625008"}]}}], single=True)
    assert (d.mg_per_day, d.dose_mg) == (500, 500)
    # only text: "500 mg IV" on that date
    assert daily_dose([{"text": "\u7532\u6cfc\u5c3c\u9f99 500mg \u9759\u6ef4"}], single=True).mg_per_day == 500


def test_combination_mg_dose_cannot_be_split() -> None:
    d = daily_dose([dosage(mg(480), code="QD")], Strength(400), mass_dose_ok=False)
    assert d.mg_per_day is None and "combination product" in d.reason


@pytest.mark.parametrize(
    ("route", "expected"),
    [
        ({"coding": [{"system": SCT, "code": "26643006"}]}, "oral"),
        ({"coding": [{"system": SCT, "code": "47625008"}]}, "intravenous"),
        ({"coding": [{"system": SCT, "code": "34206005"}]}, "subcutaneous"),
        ({"coding": [{"system": SCT, "code": "78421000"}]}, "intramuscular"),
        ({"text": "po"}, "oral"),
        ({"text": "IV"}, "intravenous"),
        ({"text": "\u53e3\u670d"}, "oral"),  # kou fu
        ({"text": "\u9759\u8109"}, "intravenous"),  # jing mai
        ({"coding": [{"system": "http://hospital.example/rt", "code": "01"}], "text": "\u9759\u6ef4"}, "intravenous"),
        ({"text": "rectal"}, None),
        (None, None),
    ],
)
def test_routes(route: dict | None, expected: str | None) -> None:
    assert route_of(route) == expected
