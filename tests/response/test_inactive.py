"""Inactive disease (seed NCT04966884: "CK<=200U/L, physician visual analogue scale(VAS) =0, and ... MYOACT scores
=0"), three-valued: false as soon as one present value fails; unknown only when none fails and one is missing."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from fhir_adapter.response.inactive import InactiveRules, inactive_disease
from fhir_adapter.response.readings import read_readings
from fhir_adapter.terminology.catalog import Catalog

from .builders import Builder

CAT = Catalog.load()
RULES = InactiveRules(organs=tuple(c.id for c in CAT.members("myoact-organ")),
                      extramuscular=tuple(c.id for c in CAT.members("myoact-extramuscular")))
F = date(2026, 5, 26)


def visit(ck: float | None = 150, phga: float | None = 0, myoact: float | None = 0, *, ck_unit: str = "U/L",
          day: date = F, b: Builder | None = None) -> Builder:
    b = b or Builder()
    if ck is not None:
        b.lab("ck", day, ck, ck_unit)
    if phga is not None:
        b.score("phga-vas", day, phga, "cm")
    if myoact is not None:
        b.score("myoact-total", day, myoact, "cm")
    return b


def decide(b: Builder, follow_up: date = F) -> dict:
    return inactive_disease(read_readings(b.record(), CAT, RULES.concepts), follow_up, 30, RULES)


def test_all_three_pass():
    # CK 200 <= 200 (the limit itself passes), VAS 0, MYOACT 0 -> inactive
    assert decide(visit(ck=200))["value"] is True


@pytest.mark.parametrize(("ck", "expected"), [(199, True), (200, True), (200.5, False), (215, False)])
def test_ck_on_both_sides(ck, expected):
    assert decide(visit(ck=ck))["value"] is expected


def test_ck_in_ukat_per_litre():
    # 3.33 ukat/L x 60 = 199.8 U/L -> passes; 3.4 ukat/L = 204 U/L -> fails
    assert decide(visit(ck=3.33, ck_unit="ukat/L"))["value"] is True
    assert decide(visit(ck=3.4, ck_unit="ukat/L"))["value"] is False


@pytest.mark.parametrize(("phga", "expected"), [(0, True), (0.1, False), (2.0, False)])
def test_physician_vas_on_both_sides(phga, expected):
    assert decide(visit(phga=phga))["value"] is expected


def test_physician_vas_in_mm():
    # 0 mm = 0 cm passes; 1 mm = 0.1 cm fails
    b = visit(phga=None)
    b.score("phga-vas", F, 0, "mm")
    assert decide(b)["value"] is True
    b = visit(phga=None)
    b.score("phga-vas", F, 1, "mm")
    assert decide(b)["value"] is False


@pytest.mark.parametrize(("myoact", "expected"), [(0, True), (0.5, False), (12, False)])
def test_myoact_total_on_both_sides(myoact, expected):
    assert decide(visit(myoact=myoact))["value"] is expected


def test_myoact_organ_score_above_zero_fails_even_with_a_total_of_zero():
    b = visit(myoact=0)
    b.score("myoact-cutaneous", F, 0.6, "cm")
    assert decide(b)["value"] is False


def test_myoact_from_organs_without_a_total():
    # every extramuscular organ VAS present and 0 -> MYOACT 0; only some of them -> unknown
    b = visit(myoact=None)
    for organ in RULES.extramuscular:
        b.score(organ, F, 0, "cm")
    assert decide(b)["value"] is True
    b = visit(myoact=None)
    b.score("myoact-cutaneous", F, 0, "cm")
    assert decide(b)["value"] is None


def test_a_failing_value_decides_even_when_another_is_missing():
    # no physician VAS, CK 390 > 200: false, not unknown
    assert decide(visit(ck=390, phga=None))["value"] is False
    # no MYOACT, physician VAS 3: false
    assert decide(visit(phga=3, myoact=None))["value"] is False


@pytest.mark.parametrize("missing", ["ck", "phga", "myoact"])
def test_unknown_only_when_nothing_fails_and_one_is_missing(missing):
    result = decide(visit(**{missing: None}))
    assert result["value"] is None
    assert result["components"][missing]["met"] is None


def test_the_three_values_come_from_one_visit():
    # the visit is the nearest assessment to the follow-up date; a CK 8 days from it is not part of that visit
    b = visit(ck=None)
    b.lab("ck", F - timedelta(days=8), 150, "U/L")
    assert decide(b)["value"] is None
    b = visit(ck=None)
    b.lab("ck", F - timedelta(days=7), 150, "U/L")
    assert decide(b)["value"] is True


def test_nothing_near_the_follow_up_date():
    result = decide(visit(day=F - timedelta(days=60)))
    assert result["value"] is None and result["visit_date"] is None
