"""Qualitative results and bounded quantities (mappings/qualitative.json, terminology/qualitative.py)."""

from __future__ import annotations

import pytest

from fhir_adapter.terminology.qualitative import (
    Result,
    Verdict,
    component_rule,
    decides,
    parse_number,
    read_components,
    read_result,
    read_text,
    read_verdict,
    verdict,
)

SCT = "http://snomed.info/sct"
V3 = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"


def vcc(system: str, code: str, text: str | None = None) -> dict:
    cc: dict = {"coding": [{"system": system, "code": code}]}
    if text:
        cc["text"] = text
    return {"valueCodeableConcept": cc}


@pytest.mark.parametrize("observation, kind, grade", [
    (vcc(SCT, "10828004"), "positive", None),
    (vcc(SCT, "260385009"), "negative", None),
    (vcc(SCT, "260373001"), "positive", None),  # detected
    (vcc(SCT, "260415000"), "negative", None),  # not detected
    (vcc(SCT, "82334004"), "indeterminate", None),
    (vcc("http://hospital.example.cn/result", "P", "阳性"), "positive", None),
    (vcc("http://hospital.example.cn/result", "X", "no idea"), "unmapped", None),
    ({"valueString": "阳性"}, "positive", None),
    ({"valueString": "阴性"}, "negative", None),
    ({"valueString": "弱阳性"}, "positive", 0),
    ({"valueString": "可疑"}, "indeterminate", None),
    ({"valueString": "+"}, "positive", 1),
    ({"valueString": "++"}, "positive", 2),
    ({"valueString": "+++"}, "positive", 3),
    ({"valueString": "＋＋＋"}, "positive", 3),  # noqa: RUF001 - full-width plus signs, as some labs send them
    ({"valueString": "-"}, "negative", None),
    ({"valueString": "阳性(++)"}, "positive", 2),
    ({"valueString": "Reactive"}, "positive", None),
    ({"valueString": "Non-reactive"}, "negative", None),
    ({"valueString": "Indeterminate"}, "indeterminate", None),
    ({"valueString": "see report"}, "unmapped", None),
    ({"valueBoolean": True}, "positive", None),
    ({"interpretation": [{"coding": [{"system": V3, "code": "POS"}]}]}, "positive", None),
    ({"interpretation": [{"coding": [{"system": V3, "code": "NEG"}]}]}, "negative", None),
    ({"interpretation": [{"coding": [{"system": V3, "code": "IND"}]}]}, "indeterminate", None),
    ({"interpretation": [{"coding": [{"system": V3, "code": "H"}]}]}, "absent", None),
    ({}, "absent", None),
])
def test_qualitative_table(observation, kind, grade):
    result = read_result(observation)
    assert result.kind == kind
    assert result.grade == grade


@pytest.mark.parametrize("observation, value, comparator, unit", [
    ({"valueString": "<0.5"}, 0.5, "<", None),
    ({"valueString": "< 20 U/mL"}, 20.0, "<", "U/mL"),
    ({"valueString": ">1000"}, 1000.0, ">", None),
    ({"valueString": "≤0.5"}, 0.5, "<=", None),
    ({"valueString": "12.5"}, 12.5, None, None),
    ({"valueQuantity": {"value": 1000, "comparator": ">", "unit": "IU/mL"}}, 1000.0, ">", "IU/mL"),
    ({"valueQuantity": {"value": 86, "unit": "U/mL"}}, 86.0, None, "U/mL"),
    ({"valueInteger": 3}, 3.0, None, None),
])
def test_quantities_with_comparators(observation, value, comparator, unit):
    result = read_result(observation)
    assert (result.kind, result.value, result.comparator, result.unit) == ("quantity", value, comparator, unit)


def test_ucum_code_and_interpretation_travel_with_a_quantity():
    obs = {"valueQuantity": {"value": 86, "unit": "units/mL", "system": "http://unitsofmeasure.org", "code": "U/mL"},
           "interpretation": [{"coding": [{"system": V3, "code": "POS"}]}]}
    result = read_result(obs)
    assert result.unit_code == "U/mL" and result.interpretation == "positive"
    assert verdict(result) == "positive"
    assert verdict(read_result({"valueQuantity": {"value": 5}})) is None
    assert verdict(Result("negative")) == "negative"


def test_interpretation_flags():
    obs = {"valueQuantity": {"value": 900, "unit": "U/L"},
           "interpretation": [{"coding": [{"system": V3, "code": "H"}]}]}
    assert read_result(obs).interpretation == "high"


def test_read_text_and_parse_number():
    assert read_text(None) == (None, None)
    assert read_text("  POSITIVE ") == ("positive", None)
    assert read_text("阳性 阴性") == (None, None)  # parts disagree: not decided
    assert parse_number("abc") is None
    assert parse_number(">=3.5") == (3.5, ">=", None)


@pytest.mark.parametrize("value, comparator, op, threshold, expected", [
    (0.5, "<", "<", 1.0, True),  # "<0.5" decides "< 1.0"
    (0.5, "<", ">", 1.0, False),
    (10, ">", ">", 100, None),  # ">10" does not decide "> 100"
    (1000, ">", ">", 100, True),
    (1000, ">", "<=", 100, False),
    (1.0, "<", "<", 1.0, True),  # x < 1.0 is < 1.0
    (1.0, "<=", "<", 1.0, None),  # x <= 1.0 may be 1.0
    (1.0, "<=", "<=", 1.0, True),
    (100, ">=", ">", 100, None),
    (100, ">=", ">=", 100, True),
    (100, ">", ">", 100, True),
    (5, "<", ">=", 5, False),
    (20, "<", "<", 10, None),
    (5.0, None, "<", 10, True),
    (5.0, None, ">", 10, False),
    (5.0, "=", ">=", 5, True),
    (1.0, "ad", "<", 2, None),  # FHIR 'ad' (sufficient to achieve): unknown bound
])
def test_decides(value, comparator, op, threshold, expected):
    assert decides(value, comparator, op, threshold) is expected


# --- quantities of qualitative concepts against the result's own cut-off ---------------------------------------
def _qty(value, comparator=None, unit="U/mL", ranges=None, interp=None):
    obs = {"valueQuantity": {"value": value, "unit": unit} | ({"comparator": comparator} if comparator else {})}
    if ranges is not None:
        obs["referenceRange"] = ranges
    if interp:
        obs["interpretation"] = [{"coding": [{"system": V3, "code": interp}]}]
    return obs


CUT32 = [{"low": {"value": 0, "unit": "U/mL"}, "high": {"value": 32, "unit": "U/mL"}}]


@pytest.mark.parametrize("observation, expected", [
    (_qty(85, ranges=CUT32), "positive"),
    (_qty(150, ">", ranges=CUT32), "positive"),
    (_qty(32, ">", ranges=CUT32), "positive"),  # above 32 whatever it is
    (_qty(5, "<", ranges=CUT32), "negative"),
    (_qty(32, "<", ranges=CUT32), "negative"),
    (_qty(40, "<", ranges=CUT32), None),  # could be either side
    (_qty(32, "<=", ranges=CUT32), None),  # could be the cut-off itself
    (_qty(32, ranges=CUT32), "indeterminate"),  # at the cut-off: neither above nor below
    (_qty(20, ranges=CUT32), "negative"),
    (_qty(85), None),  # no cut-off, no interpretation: not read
    (_qty(85, interp="H"), "positive"),
    (_qty(85, interp="N"), "negative"),
    (_qty(85, ranges=CUT32, interp="N"), None),  # the lab's flag and its range disagree
    (_qty(85, ranges=CUT32, interp="H"), "positive"),
    (_qty(40, "<", ranges=CUT32, interp="N"), "negative"),  # the range does not decide, the lab does
    (_qty(0.95, unit=None, ranges=[{"low": {"value": 0.9}, "high": {"value": 1.1}}]), "indeterminate"),  # grey zone
    (_qty(0.5, unit=None, ranges=[{"low": {"value": 0.9}, "high": {"value": 1.1}}]), "negative"),
    (_qty(1.2, unit=None, ranges=[{"low": {"value": 0.9}, "high": {"value": 1.1}}]), "positive"),
    (_qty(0.95, unit=None, ranges=[{"high": {"value": 0.9}}, {"low": {"value": 0.9}, "high": {"value": 1.1},
                                                              "text": "Equivocal"}]), "indeterminate"),
    (_qty(1.0, unit=None, ranges=[{"high": {"value": 0.9}, "text": "negative"},
                                  {"low": {"value": 1.0}, "text": "positive"}]), "positive"),  # positive from 1.0
    (_qty(0.95, unit=None, ranges=[{"high": {"value": 0.9}, "text": "negative"},
                                   {"low": {"value": 1.0}, "text": "positive"}]), "indeterminate"),
    (_qty(85, ranges=[{"high": {"value": 3.2, "unit": "kU/L"}}]), "positive"),  # 3.2 kU/L = 3.2 U/mL... converted
    (_qty(85, ranges=[{"high": {"value": 32, "unit": "mg/dL"}}]), None),  # another dimension: no cut-off
])
def test_read_verdict_of_a_quantity(observation, expected):
    assert read_verdict(observation).verdict == expected


def test_read_verdict_says_how():
    assert read_verdict(_qty(85, ranges=CUT32)).how == "85 U/mL above the lab's cut-off 32 (referenceRange.high)"
    assert read_verdict(_qty(5, "<", ranges=CUT32)).how == "<5 U/mL below the lab's cut-off 32 (referenceRange.high)"
    no_cut = read_verdict(_qty(85))
    assert no_cut.how == "85 U/mL: a quantity with no reference range or interpretation: the lab's cut-off is needed"
    assert "cut-off" in no_cut.needs
    assert read_verdict(vcc(SCT, "10828004")) == Verdict("positive")


# --- IGRA by the QFT-Plus package insert -------------------------------------------------------------------------
QFT = component_rule("qft-plus")


@pytest.mark.parametrize("values, expected", [
    ({"nil": (0.0, None), "tb1": (0.35, None), "tb2": (0.0, None), "mitogen": (5.0, None)}, "positive"),  # 0.35 itself
    ({"nil": (0.0, None), "tb1": (0.34, None), "tb2": (0.34, None), "mitogen": (5.0, None)}, "negative"),
    ({"nil": (2.0, None), "tb1": (0.49, None), "tb2": (0.2, None), "mitogen": (5.0, None)}, "negative"),  # < 25% Nil
    ({"nil": (2.0, None), "tb1": (0.5, None), "tb2": (0.2, None), "mitogen": (5.0, None)}, "positive"),  # = 25% Nil
    ({"nil": (8.0, None), "tb1": (2.0, None), "tb2": (0.2, None)}, "positive"),  # Nil 8.0 still valid; Mitogen: any
    ({"nil": (8.01, None), "tb1": (2.0, None), "tb2": (0.2, None), "mitogen": (5.0, None)}, "indeterminate"),
    ({"nil": (0.1, None), "tb1": (0.1, None), "tb2": (0.1, None), "mitogen": (0.5, None)}, "negative"),  # 0.5 itself
    ({"nil": (0.1, None), "tb1": (0.1, None), "tb2": (0.1, None), "mitogen": (0.49, None)}, "indeterminate"),
    ({"nil": (0.1, None), "tb1": (0.1, None), "tb2": (0.1, None), "mitogen": (10.0, ">")}, "negative"),
    ({"nil": (0.1, None), "tb1": (10.0, ">"), "tb2": (0.1, None)}, "positive"),
    ({"nil": (0.1, None), "tb1": (0.5, "<"), "tb2": (0.1, None), "mitogen": (5.0, None)}, None),  # may be >= 0.35
    ({"nil": (0.1, None), "tb1": (0.1, None), "mitogen": (5.0, None)}, None),  # TB2 missing: not negative
    ({"tb1": (2.0, None), "tb2": (0.1, None), "mitogen": (5.0, None)}, None),  # no Nil: nothing
])
def test_qft_plus_rule(values, expected):
    assert read_components(QFT, values).verdict == expected


def test_nan_and_infinity_are_not_quantities():
    assert read_result({"valueQuantity": {"value": float("nan"), "unit": "U/mL"}}).kind == "absent"
    assert read_result({"valueDecimal": float("inf")}).kind == "absent"
    assert read_verdict({"valueQuantity": {"value": float("nan")}, "referenceRange": [{"high": {"value": 1}}]}
                        ).verdict is None
