"""The TIS arithmetic a clinician would do by hand (clinical.md §1.2-1.4; studies/tis-2016-acr-eular.json).

Each test shows the sum in a comment: percent change per measure, its bin, its points, the total, the class.
"""

from __future__ import annotations

import pytest

from fhir_adapter.errors import ConfigError
from fhir_adapter.response.tis import category, load_rules, percent_change, points_for, rules_from, score

RULES = load_rules()


def rule(measure: str):
    return RULES.measure(measure)


def changes(**kw: float | None) -> dict[str, float | None]:
    return dict(kw)


# -- percent change ---------------------------------------------------------------------------------------------


def test_vas_change_is_absolute_on_the_10_cm_scale():
    # PhGA 7 -> 1 cm: (7 - 1) / 10 x 100 = 60 %, not (7 - 1) / 7 = 85.7 % (relative)
    assert percent_change(rule("phga"), 7.0, 1.0) == 60.0


def test_haq_change_is_absolute_on_the_0_3_scale():
    # HAQ 1.5 -> 0.25: 1.25 / 3 x 100 = 41.67 %
    assert percent_change(rule("haq"), 1.5, 0.25) == pytest.approx(41.666667)


def test_mmt_change_uses_the_scale_maximum_and_higher_is_better():
    # MMT-8 62 -> 77 of 80: 15 / 80 x 100 = 18.75 %; 120 -> 132 of 150: 12 / 150 x 100 = 8 %
    assert percent_change(rule("mmt8"), 62, 77, scale_max=80) == 18.75
    assert percent_change(rule("mmt8"), 120, 132, scale_max=150) == 8.0
    # the same 12 points on the 80 scale would be 15 %: the scale matters
    assert percent_change(rule("mmt8"), 68, 80, scale_max=80) == 15.0


def test_mmt_without_a_known_scale_or_with_an_odd_one_is_refused():
    with pytest.raises(ValueError, match="scale maximum is not known"):
        percent_change(rule("mmt8"), 62, 77)
    with pytest.raises(ValueError, match="80 or 150"):
        percent_change(rule("mmt8"), 62, 77, scale_max=100)


def test_enzyme_change_is_relative_to_baseline():
    # AST 95 -> 30 U/L: 65 / 95 x 100 = 68.42 %
    assert percent_change(rule("enzyme"), 95, 30) == pytest.approx(68.421053)
    with pytest.raises(ValueError, match="undefined"):
        percent_change(rule("enzyme"), 0, 30)


def test_worsening_is_negative():
    # PhGA 4 -> 7: (4 - 7) / 10 = -30 %; MMT 70 -> 60 of 80: -12.5 %; CK 300 -> 900: -200 %
    assert percent_change(rule("phga"), 4, 7) == -30.0
    assert percent_change(rule("mmt8"), 70, 60, scale_max=80) == -12.5
    assert percent_change(rule("enzyme"), 300, 900) == -200.0


def test_floating_point_noise_does_not_move_an_edge():
    # CK 8.4 ukat/L x 60 = 504.00000000000006 U/L; PtGA 5.0 -> 4.5 = exactly 5 % -> 0 points
    assert percent_change(rule("ptga"), 5.0, 4.5) == 5.0
    assert points_for(rule("ptga"), percent_change(rule("ptga"), 5.0, 4.5)) == 0
    # 6.0 -> 5.6 cm: 0.4 / 10 = 4 % (float gives 3.9999999999999947)
    assert percent_change(rule("phga"), 6.0, 5.6) == 4.0


# -- bins: every edge -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("change", "phga", "ptga", "haq", "enzyme", "extra"), [
    (-50, 0, 0, 0, 0, 0),        # worsening of any size: 0
    (0, 0, 0, 0, 0, 0),
    (5, 0, 0, 0, 0, 0),          # exactly 5 %: still the first bin ("worsening to 5 % improvement")
    (5.000001, 7.5, 2.5, 5, 2.5, 7.5),
    (15, 7.5, 2.5, 5, 2.5, 7.5),  # exactly 15 %: upper edge of ">5 to 15"
    (15.5, 15, 5, 7.5, 5, 12.5),
    (25, 15, 5, 7.5, 5, 12.5),    # exactly 25 %
    (25.1, 17.5, 7.5, 7.5, 7.5, 15),
    (40, 17.5, 7.5, 7.5, 7.5, 15),  # exactly 40 %
    (40.1, 20, 10, 10, 7.5, 20),
    (100, 20, 10, 10, 7.5, 20),
])
def test_points_at_every_edge_of_the_five_percent_bins(change, phga, ptga, haq, enzyme, extra):
    assert points_for(rule("phga"), change) == phga
    assert points_for(rule("ptga"), change) == ptga
    assert points_for(rule("haq"), change) == haq
    assert points_for(rule("enzyme"), change) == enzyme
    assert points_for(rule("extra"), change) == extra


@pytest.mark.parametrize(("change", "points"), [
    (-10, 0), (0, 0), (2, 0), (2.01, 10), (10, 10), (10.01, 20), (20, 20), (20.01, 27.5), (30, 27.5),
    (30.01, 32.5), (100, 32.5),
])
def test_points_at_every_edge_of_the_mmt_bins(change, points):
    assert points_for(rule("mmt8"), change) == points


def test_edges_reached_from_real_values():
    # PhGA 6.0 -> 5.5: 5 % -> 0; 6.0 -> 4.5: 15 % -> 7.5; 6.0 -> 3.5: 25 % -> 15; 6.0 -> 2.0: 40 % -> 17.5
    for follow, pts in ((5.5, 0), (4.5, 7.5), (3.5, 15), (2.0, 17.5)):
        assert points_for(rule("phga"), percent_change(rule("phga"), 6.0, follow)) == pts
    # MMT of 150: 3 points = 2 % -> 0; 15 = 10 % -> 10; 30 = 20 % -> 20; 45 = 30 % -> 27.5
    for gain, pts in ((3, 0), (15, 10), (30, 20), (45, 27.5)):
        assert points_for(rule("mmt8"), percent_change(rule("mmt8"), 100, 100 + gain, scale_max=150)) == pts
    # MMT of 80: 1.6 points = 2 % -> 0 (a whole-point gain of 2 is 2.5 % -> 10); 8 = 10 % -> 10; 16 = 20 % -> 20;
    # 24 = 30 % -> 27.5
    for gain, pts in ((1.6, 0), (2, 10), (8, 10), (16, 20), (24, 27.5)):
        assert points_for(rule("mmt8"), percent_change(rule("mmt8"), 50, 50 + gain, scale_max=80)) == pts
    # HAQ 3-point scale: 0.15 = 5 % -> 0; 0.45 = 15 % -> 5; 0.75 = 25 % -> 7.5; 1.2 = 40 % -> 7.5
    for drop, pts in ((0.15, 0), (0.45, 5), (0.75, 7.5), (1.2, 7.5)):
        assert points_for(rule("haq"), percent_change(rule("haq"), 2.0, 2.0 - drop)) == pts
    # enzyme 400 U/L: -> 380 = 5 % -> 0; -> 340 = 15 % -> 2.5; -> 300 = 25 % -> 5; -> 240 = 40 % -> 7.5
    for follow, pts in ((380, 0), (340, 2.5), (300, 5), (240, 7.5)):
        assert points_for(rule("enzyme"), percent_change(rule("enzyme"), 400, follow)) == pts


# -- totals and classes -----------------------------------------------------------------------------------------


def test_maximum_is_100():
    # 20 + 10 + 32.5 + 10 + 7.5 + 20 = 100
    result = score(RULES, changes(phga=100, ptga=100, mmt8=100, haq=100, enzyme=100, extra=100))
    assert result.tis == 100 and result.category == "major"


def test_major():
    # PhGA 60 % -> 20, PtGA 60 % -> 10, MMT 18.75 % -> 20, HAQ 41.67 % -> 10, AST 68.42 % -> 7.5, extra 50 % -> 20
    # = 87.5 >= 60: major
    r = score(RULES, changes(phga=60, ptga=60, mmt8=18.75, haq=41.67, enzyme=68.42, extra=50))
    assert (r.tis, r.range, r.category, r.responder, r.missing) == (87.5, (87.5, 87.5), "major", True, ())


def test_moderate():
    # 26 % -> 17.5, 20 % -> 5, MMT 8 % -> 10, HAQ 12.5 % -> 5, LDH 28.57 % -> 7.5, extra 16 % -> 12.5 = 57.5
    r = score(RULES, changes(phga=26, ptga=20, mmt8=8, haq=12.5, enzyme=28.57, extra=16))
    assert (r.tis, r.category, r.responder) == (57.5, "moderate", True)


def test_minimal():
    # 10 % -> 7.5, 5 % -> 0, MMT 2.5 % -> 10, HAQ 8.33 % -> 5, CK 30 % -> 7.5, extra 4 % -> 0 = 30
    r = score(RULES, changes(phga=10, ptga=5, mmt8=2.5, haq=8.33, enzyme=30, extra=4))
    assert (r.tis, r.category, r.responder) == (30.0, "minimal", True)


def test_none():
    # 4 % -> 0, 10 % -> 2.5, MMT 1.33 % -> 0, HAQ 4.17 % -> 0, ALT 16.67 % -> 5, extra 8 % -> 7.5 = 15 < 20
    r = score(RULES, changes(phga=4, ptga=10, mmt8=1.33, haq=4.17, enzyme=16.67, extra=8))
    assert (r.tis, r.category, r.responder) == (15.0, "none", False)


def test_cutoffs_are_inclusive():
    # 20 is minimal, 40 moderate, 60 major; 19.9 none
    assert [category(RULES, x) for x in (19.9, 20, 39.9, 40, 59.9, 60)] == [
        "none", "minimal", "minimal", "moderate", "moderate", "major"]
    # juvenile cut-offs are data too: 30 / 45 / 70
    assert [category(RULES, x, "juvenile") for x in (29.9, 30, 45, 70)] == ["none", "minimal", "moderate", "major"]


def test_worsening_everywhere_scores_zero_not_negative():
    # every measure worse: each scores 0 (no negative points), total 0, none
    r = score(RULES, changes(phga=-30, ptga=-40, mmt8=-12.5, haq=-29.17, enzyme=-200, extra=-40))
    assert (r.tis, r.category, r.responder) == (0.0, "none", False)
    assert all(m.points == 0 for m in r.measures)


# -- missing measures -------------------------------------------------------------------------------------------


def test_missing_measure_with_a_decidable_class():
    # HAQ missing; the other five: 20 + 7.5 + 20 + 7.5 + 12.5 = 67.5; HAQ could add 0..10 -> 67.5..77.5, all major
    r = score(RULES, changes(phga=50, ptga=30, mmt8=12.5, haq=None, enzyme=30, extra=20))
    assert r.tis is None
    assert r.range == (67.5, 77.5)
    assert (r.category, r.responder, r.missing) == ("major", True, ("haq",))


def test_missing_measure_with_an_undecidable_class():
    # PhGA missing; the other five: 2.5 + 10 + 0 + 0 + 0 = 12.5; PhGA could add 0..20 -> 12.5..32.5: none or minimal
    r = score(RULES, changes(ptga=10, mmt8=2.67, haq=0, enzyme=2.5, extra=4))
    assert (r.tis, r.range, r.category, r.responder) == (None, (12.5, 32.5), None, None)


def test_missing_enzyme_near_and_far_from_a_cutoff():
    # enzyme missing (0..7.5): PhGA 10 % -> 7.5, PtGA 10 % -> 2.5, MMT 0, HAQ 0, extra 6 % -> 7.5 = 17.5
    # -> 17.5..25: none or minimal, so class and responder unknown
    r = score(RULES, changes(phga=10, ptga=10, mmt8=0, haq=0, enzyme=None, extra=6))
    assert (r.range, r.category, r.responder) == ((17.5, 25.0), None, None)
    # enzyme missing with every other measure 0: 0..7.5, all below 20 -> none and not a responder, decided
    r = score(RULES, changes(phga=0, ptga=0, mmt8=0, haq=0, enzyme=None, extra=0))
    assert (r.tis, r.range, r.category, r.responder) == (None, (0.0, 7.5), "none", False)


def test_all_missing():
    r = score(RULES, {})
    assert (r.tis, r.range, r.category, r.responder) == (None, (0.0, 100.0), None, None)
    assert len(r.missing) == 6


# -- the rules are data -----------------------------------------------------------------------------------------


def test_rules_file_is_checked():
    with pytest.raises(ConfigError, match="one more points than edges"):
        rules_from({"measures": [{"id": "x", "display": "x", "concepts": [], "unit": "cm", "range": 10,
                                  "change": "absolute-decrease", "edges": [5, 15], "points": [0, 1]}],
                    "cutoffs": {"adult": []}})
    with pytest.raises(ConfigError, match="malformed"):
        rules_from({"measures": []})
    with pytest.raises(ConfigError, match="no cut-offs"):
        score(RULES, {}, population="martian")
