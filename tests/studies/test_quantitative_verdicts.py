"""Quantities of qualitative concepts (an anti-MDA5 level, an HBsAg index, an anti-HCV or HIV S/CO) read against
the result's own reference range or interpretation, comparators included; no cut-off on the result is unknown,
never a guess; the lab's grey zone is indeterminate. Screening date S is 2026-06-30."""

from __future__ import annotations

from typing import Any

import pytest

from tests.studies.helpers import LOINC, UCUM, Rec, day, result

V3 = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
MDA5_LEVEL = "105529-2"


def _level(rec: Rec, code: str, value: float, unit: str | None, comparator: str | None = None,
           high: float | None = None, low: float | None = None, interp: str | None = None,
           range_text: str | None = None, offset: int = -10, ranges: list[dict[str, Any]] | None = None) -> Rec:
    q: dict[str, Any] = {"value": value}
    if unit:
        q |= {"unit": unit, "system": UCUM, "code": unit}
    if comparator:
        q["comparator"] = comparator
    body: dict[str, Any] = {"status": "final", "code": {"coding": [{"system": LOINC, "code": code}]},
                            "effectiveDateTime": day(offset),
                            "valueQuantity": q}
    rr: dict[str, Any] = {}
    if high is not None:
        rr["high"] = {"value": high} | ({"unit": unit} if unit else {})
    if low is not None:
        rr["low"] = {"value": low} | ({"unit": unit} if unit else {})
    if range_text:
        rr["text"] = range_text
    if rr or ranges:
        body["referenceRange"] = ([rr] if rr else []) + (ranges or [])
    if interp:
        body["interpretation"] = [{"coding": [{"system": V3, "code": interp}]}]
    return rec.add("Observation", body)


def _dm() -> Rec:
    return Rec().lab("29463-7", 58, "kg").cond("M33.11")


def test_mda5_level_above_the_cut_off_is_positive_and_says_how() -> None:
    """I2 'positive serum anti-MDA5': 85 U/mL with the lab's cut-off 32 (referenceRange.high) is positive."""
    out = _level(_dm(), MDA5_LEVEL, 85, "U/mL", high=32).screen()
    assert result(out, "I2") == "met"
    assert "85 U/mL above the lab's cut-off 32 (referenceRange.high)" in out["criteria"]["I2"]["reason"]


@pytest.mark.parametrize(("comparator", "value", "want", "words"), [
    (">", 150, "met", "above the lab's cut-off 32"),
    ("<", 5, "not-met", "below the lab's cut-off 32"),
    ("<", 40, "unknown", "could be either"),
    (None, 20, "not-met", "below the lab's cut-off 32"),
    (None, 32, "unknown", "at the lab's cut-off 32"),
])
def test_mda5_level_with_a_comparator(comparator: str | None, value: float, want: str, words: str) -> None:
    """'>150' with cut-off 32 is positive, '<5' negative, '<40' could be either (unknown), the cut-off itself
    is neither."""
    out = _level(_dm(), MDA5_LEVEL, value, "U/mL", comparator=comparator, high=32).screen()
    assert result(out, "I2") == want
    assert words in out["criteria"]["I2"]["reason"]


def test_mda5_level_without_cut_off_or_interpretation_is_unknown() -> None:
    """A quantity with no reference range and no interpretation: the lab's cut-off is needed, never a guess."""
    out = _level(_dm(), MDA5_LEVEL, 85, "U/mL").screen()
    c = out["criteria"]["I2"]
    assert c["result"] == "unknown"
    assert "a quantity with no reference range or interpretation: the lab's cut-off is needed" in c["reason"]
    assert "cut-off" in c["to_resolve"]


@pytest.mark.parametrize(("interp", "want"), [("H", "met"), ("POS", "met"), ("N", "not-met"), ("NEG", "not-met"),
                                              ("IND", "unknown")])
def test_mda5_level_read_from_the_lab_interpretation(interp: str, want: str) -> None:
    """Without a reference range the lab's interpretation decides (H/POS positive, N/NEG negative, IND not)."""
    out = _level(_dm(), MDA5_LEVEL, 85, "U/mL", interp=interp).screen()
    assert result(out, "I2") == want
    assert "interpretation" in out["criteria"]["I2"]["reason"]


def test_lab_interpretation_that_disagrees_with_the_range_is_not_read() -> None:
    """85 U/mL above cut-off 32 but flagged N by the lab: the two disagree, so nobody's reading is guessed."""
    out = _level(_dm(), MDA5_LEVEL, 85, "U/mL", high=32, interp="N").screen()
    assert result(out, "I2") == "unknown"
    assert "disagree" in out["criteria"]["I2"]["reason"]


def test_nct04966884_t1_reads_the_level_too() -> None:
    """NCT04966884 T1 'anti-MDA5+ DM patients' reads the same verdict."""
    from datetime import date

    from fhir_adapter.studies.definition import load_study
    from fhir_adapter.studies.screen import screen
    from fhir_adapter.terminology.catalog import Catalog

    rec = _level(_dm(), MDA5_LEVEL, 85, "U/mL", comparator=">", high=32)
    out = screen(rec.record(), load_study("NCT04966884"), Catalog.load(), date(2026, 6, 30), None)
    assert out["criteria"]["T1"]["result"] == "met"


# --- E6 / E7: tests read as positive/negative from one number --------------------------------------------------
def _serology(hbsag: tuple[Any, ...] = (0.01, "[IU]/mL", None, 0.05), hcv: tuple[Any, ...] = (0.1, None, None, 1.0),
              hbc: tuple[Any, ...] = (0.2, None, None, 1.0)) -> Rec:
    rec = Rec().lab("29463-7", 58, "kg")
    for code, (value, unit, low, high) in (("5196-1", hbsag), ("16128-1", hcv), ("16933-4", hbc)):
        rec = _level(rec, code, value, unit, low=low, high=high)
    return rec


def test_e6_quantitative_markers_below_their_cut_offs_are_negative() -> None:
    """E6: HBsAg 0.01 IU/mL (cut-off 0.05), anti-HCV S/CO 0.1 and anti-HBc S/CO 0.2 (cut-off 1.0): negative."""
    out = _serology().screen()
    assert result(out, "E6") == "not-met"


def test_e6_hbsag_index_above_cut_off_is_positive() -> None:
    """E6 'HBsAg-positive': an HBsAg of 250 IU/mL above the cut-off 0.05 excludes."""
    out = _serology(hbsag=(250, "[IU]/mL", None, 0.05)).screen()
    assert result(out, "E6") == "met" and "above the lab's cut-off" in out["criteria"]["E6"]["reason"]


GREY = [{"high": {"value": 0.9}}, {"low": {"value": 0.9}, "high": {"value": 1.1}, "text": "灰区"}]


@pytest.mark.parametrize(("low", "high", "ranges"), [(0.9, 1.0, None), (None, None, GREY)])
def test_e6_anti_hcv_in_the_lab_grey_zone_is_unknown(low: float | None, high: float | None,
                                                     ranges: list[dict[str, Any]] | None) -> None:
    """E6: an anti-HCV S/CO of 0.95 inside the lab's grey zone (a range with a low above 0 and a high, or a range
    the lab calls a grey zone, 灰区, beside its normal range) is indeterminate: unknown, never negative."""
    rec = Rec().lab("29463-7", 58, "kg")
    rec = _level(rec, "5196-1", 0.01, "[IU]/mL", high=0.05)
    rec = _level(rec, "16933-4", 0.2, None, high=1.0)
    rec = _level(rec, "16128-1", 0.95, None, low=low, high=high, ranges=ranges)
    out = rec.screen()
    assert result(out, "E6") == "unknown"
    assert "grey zone" in out["criteria"]["E6"]["reason"]


@pytest.mark.parametrize(("value", "want"), [(0.2, "not-met"), (35.0, "met")])
def test_e7_hiv_ag_ab_s_co(value: float, want: str) -> None:
    """E7: HIV Ag/Ab combo reported as S/CO against the cut-off 1.0."""
    out = _level(Rec().lab("29463-7", 58, "kg"), "56888-1", value, None, high=1.0).screen()
    assert result(out, "E7") == want


def test_e7_hiv_quantity_without_cut_off_is_unknown() -> None:
    """E7: an S/CO with no cut-off and no interpretation is unknown, with the reason."""
    out = _level(Rec().lab("29463-7", 58, "kg"), "56888-1", 0.2, None).screen()
    assert result(out, "E7") == "unknown"
    assert "the lab's cut-off is needed" in out["criteria"]["E7"]["reason"]


def test_impossible_level_is_set_aside_not_read() -> None:
    """An anti-MDA5 level of -3 U/mL cannot be true: not 'below the cut-off', named in the reason."""
    out = _level(_dm(), MDA5_LEVEL, -3, "U/mL", high=32).screen()
    c = out["criteria"]["I2"]
    assert c["result"] == "unknown" and "set aside: value -3 U/mL cannot be negative" in c["reason"]
