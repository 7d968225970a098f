"""Extracting the six core set measures from FHIR Observations (clinical.md §1.4-1.5, §5; criteria-tables R2)."""

from __future__ import annotations

from datetime import date

import pytest

from fhir_adapter.response.measures import Windows, concepts_of, core_set
from fhir_adapter.response.readings import read_readings
from fhir_adapter.response.tis import load_rules
from fhir_adapter.terminology.catalog import Catalog

from .builders import Builder, core

RULES = load_rules()
CAT = Catalog.load()
B, F = date(2025, 1, 10), date(2026, 1, 10)


DEFAULT = Windows()


def tis(b: Builder, baseline: date = B, follow_up: date = F, windows: Windows = DEFAULT):
    readings = read_readings(b.record(), CAT, concepts_of(RULES))
    return core_set(RULES, readings, baseline, follow_up, windows)


def full(b: Builder, day, **kw) -> Builder:
    values = dict(phga=5.0, ptga=5.0, mmt=60, haq=1.0, extra=5.0)
    values.update(kw)
    return core(b, day, **values)


def standard() -> Builder:
    """Baseline: PhGA 7, PtGA 8, MMT 62/80, HAQ 1.5, extra 6, CK 600 (ULN 174), AST 95 (ULN 40).
    Month 12: PhGA 1, PtGA 2, MMT 77/80, HAQ 0.25, extra 1, CK 300, AST 30."""
    b = Builder()
    full(b, B, phga=7.0, ptga=8.0, mmt=62, haq=1.5, extra=6.0)
    full(b, F, phga=1.0, ptga=2.0, mmt=77, haq=0.25, extra=1.0)
    b.lab("ck", B, 600, "U/L", 174).lab("ck", F, 300, "U/L", 174)
    b.lab("ast", B, 95, "U/L", 40).lab("ast", F, 30, "U/L", 40)
    return b


def test_major_from_observations():
    # CK 600/174 = 3.45 x ULN beats AST 95/40 = 2.38: CK is the enzyme, 600 -> 300 = 50 % -> 7.5
    # PhGA 60 % -> 20, PtGA 60 % -> 10, MMT 15/80 = 18.75 % -> 20, HAQ 41.67 % -> 10, extra 50 % -> 20: 87.5 major
    cs = tis(standard())
    assert cs.values["enzyme"].concept == "ck"
    assert cs.values["enzyme"].baseline_x_uln == pytest.approx(600 / 174)
    assert (cs.result.tis, cs.result.category) == (87.5, "major")


def test_vas_in_mm_is_converted_to_cm():
    # PhGA 60 mm -> 44 mm = 6.0 -> 4.4 cm: 1.6 / 10 = 16 % -> 15 points. Read as cm it would be 160 % -> 20
    b = Builder()
    core(b, B, phga=60, vas_unit="mm")
    core(b, F, phga=44, vas_unit="mm")
    v = tis(b).values["phga"]
    assert (v.baseline.value, v.follow_up.value, v.change_pct) == (6.0, 4.4, 16.0)
    assert {m.measure: m.points for m in tis(b).result.measures}["phga"] == 15


def test_vas_out_of_its_scale_is_refused_not_guessed():
    # 60 "cm" on a 10 cm scale is surely mm mislabelled: the value is set aside with the reason, the measure missing
    b = Builder()
    core(b, B, phga=60)
    core(b, F, phga=44)
    v = tis(b).values["phga"]
    assert v.change_pct is None
    assert any("outside" in p for p in v.problems)


def test_ck_in_ukat_per_litre():
    # CK 15.0 -> 8.4 ukat/L x 60 = 900 -> 504 U/L; ULN 2.9 ukat/L = 174 U/L; (900 - 504) / 900 = 44 % -> 7.5
    b = Builder()
    b.lab("ck", B, 15.0, "ukat/L", 2.9).lab("ck", F, 8.4, "ukat/L", 2.9)
    v = tis(b).values["enzyme"]
    assert v.baseline.value == pytest.approx(900) and v.follow_up.value == pytest.approx(504)
    assert v.uln == pytest.approx(174)
    assert v.change_pct == 44.0


def test_enzyme_choice_when_several_are_abnormal():
    # CK 400/174 = 2.30, LDH 500/250 = 2.00, ALT 120/50 = 2.40, AST 90/40 = 2.25, aldolase 15/7.6 = 1.97:
    # ALT is the most abnormal although CK has the highest number. ALT 120 -> 100 = 16.67 % -> 5
    b = Builder()
    for name, base, fol, uln in (("ck", 400, 100, 174), ("ldh", 500, 200, 250), ("alt", 120, 100, 50),
                                 ("ast", 90, 30, 40), ("aldolase", 15, 5, 7.6)):
        b.lab(name, B, base, "U/L", uln).lab(name, F, fol, "U/L", uln)
    cs = tis(b)
    v = cs.values["enzyme"]
    assert v.concept == "alt" and v.baseline_x_uln == pytest.approx(2.4)
    assert v.change_pct == pytest.approx(16.666667)
    assert {m.measure: m.points for m in cs.result.measures}["enzyme"] == 5
    assert [c["concept"] for c in v.candidates] == ["ck", "aldolase", "ldh", "alt", "ast"]


def test_enzyme_without_uln_blocks_the_choice():
    # LDH has no referenceRange.high and no configured ULN: it might be the most abnormal, so no choice is made
    b = Builder()
    b.lab("ck", B, 400, "U/L", 174).lab("ck", F, 100, "U/L", 174)
    b.lab("ldh", B, 900, "U/L").lab("ldh", F, 300, "U/L")
    v = tis(b).values["enzyme"]
    assert v.change_pct is None and any("no ULN for ldh" in p for p in v.problems)


def test_enzyme_follow_up_is_the_same_enzyme():
    # AST chosen at baseline (95/40); follow-up has only CK: the enzyme measure is missing, CK is not substituted
    b = Builder()
    b.lab("ast", B, 95, "U/L", 40).lab("ck", B, 100, "U/L", 174).lab("ck", F, 50, "U/L", 174)
    v = tis(b).values["enzyme"]
    assert v.concept == "ast" and v.follow_up is None and v.change_pct is None


@pytest.mark.parametrize(("scale", "base", "fol", "pct", "points"), [
    (80, 70, 72, 2.5, 10),      # 2 / 80 = 2.5 % -> 10
    (150, 110, 112, 1.33, 0),   # 2 / 150 = 1.33 % -> 0: the same gain scores nothing on the 150 scale
    (150, 120, 135, 10.0, 10),  # 15 / 150 = exactly 10 % -> 10 (upper edge)
    (80, 60, 76, 20.0, 20),     # 16 / 80 = exactly 20 % -> 20
])
def test_mmt_on_both_scales(scale, base, fol, pct, points):
    b = Builder()
    core(b, B, mmt=base, mmt_max=scale)
    core(b, F, mmt=fol, mmt_max=scale)
    cs = tis(b)
    assert cs.values["mmt8"].scale_max == scale
    assert cs.values["mmt8"].change_pct == pytest.approx(pct, abs=0.01)
    assert {m.measure: m.points for m in cs.result.measures}["mmt8"] == points


def test_mmt_scale_from_the_code_and_never_guessed():
    # the mmt8-150 code says the scale; a bare mmt8 with no referenceRange gives none: the measure is missing
    b = Builder()
    b.score("mmt8-150", B, 120, "{score}").score("mmt8-150", F, 132, "{score}")
    assert tis(b).values["mmt8"].change_pct == 8.0
    b = Builder()
    core(b, B, mmt=62, mmt_max=None)
    core(b, F, mmt=77, mmt_max=None)
    v = tis(b).values["mmt8"]
    assert v.change_pct is None and any("scale maximum not stated" in p for p in v.problems)


def test_mmt_scale_change_between_visits_is_refused():
    b = Builder()
    core(b, B, mmt=62, mmt_max=80)
    core(b, F, mmt=130, mmt_max=150)
    v = tis(b).values["mmt8"]
    assert v.change_pct is None and any("scale changed" in p for p in v.problems)


def test_windows():
    # baseline: the latest on or before B within 30 days (B - 30 counts, B - 31 does not; after B never)
    # follow-up: the nearest to F within 30 days either side, the earlier on a tie
    b = Builder()
    core(b, date(2024, 12, 11), haq=2.0)   # B - 30
    core(b, date(2024, 12, 1), haq=2.5)    # B - 40: outside
    core(b, date(2025, 1, 11), haq=0.1)    # B + 1: not a baseline value
    core(b, date(2026, 1, 5), haq=1.0)     # F - 5
    core(b, date(2026, 1, 15), haq=0.5)    # F + 5: tie, the earlier wins
    v = tis(b).values["haq"]
    assert (v.baseline.value, v.follow_up.value) == (2.0, 1.0)
    b = Builder()
    core(b, date(2024, 12, 10), haq=2.0)   # B - 31
    core(b, date(2026, 2, 10), haq=1.0)    # F + 31
    v = tis(b).values["haq"]
    assert v.baseline is None and v.follow_up is None and v.change_pct is None
    # windows are settings
    v = tis(b, windows=Windows(31, 31)).values["haq"]
    assert v.change_pct == pytest.approx(33.333333)


def test_missing_measure_gives_a_range():
    # no HAQ at follow-up: the other five of the standard patient give 77.5; HAQ adds 0..10 -> 77.5..87.5, major
    b = standard()
    b.observations = [o for o in b.observations
                      if not (o["code"]["coding"][0]["code"] == "haq-di" and o["effectiveDateTime"].startswith("2026"))]
    r = tis(b).result
    assert (r.tis, r.range, r.category, r.missing) == (None, (77.5, 87.5), "major", ("haq",))


def test_bounded_lab_value_is_not_a_number():
    # CK "<20 U/L" at follow-up: not an exact value, so not used
    b = Builder()
    b.lab("ck", B, 400, "U/L", 174)
    b.obs("http://loinc.org", "2157-6", F, 20, "U/L", high=174, comparator="<")
    v = tis(b).values["enzyme"]
    assert v.follow_up is None and any("bounded value" in p for p in v.problems)
