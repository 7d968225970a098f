"""Qualitative results and bounded quantities (mappings/qualitative.json, terminology/qualitative.py)."""

from __future__ import annotations

import pytest

from fhir_adapter.terminology.qualitative import Result, decides, parse_number, read_result, read_text, verdict

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
