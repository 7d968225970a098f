"""Endpoint changes (criteria-tables R3-R6, derived values flagged) and safety signals after baseline (R7)."""

from __future__ import annotations

from datetime import date

import pytest

from fhir_adapter.response.endpoints import concepts_of, endpoint_changes
from fhir_adapter.response.measures import Windows
from fhir_adapter.response.readings import read_readings
from fhir_adapter.response.safety import lab_concepts, safety_signals
from fhir_adapter.response.settings import load_settings
from fhir_adapter.terminology.catalog import Catalog

from .builders import LOINC, Builder

CAT = Catalog.load()
SETTINGS = load_settings()
B, F = date(2025, 1, 10), date(2026, 1, 10)
NAMES = ("fvc-pct-predicted", "dlco-pct-predicted", "ferritin", "lymphocytes", "cd19", "pf-ratio")


def changes(b: Builder) -> dict:
    readings = read_readings(b.record(), CAT, concepts_of(SETTINGS.endpoints, NAMES))
    return endpoint_changes(readings, SETTINGS.endpoints, NAMES, B, F, Windows())


def test_direct_values_and_their_change():
    # FVC 68 -> 80 %: +12 points (+17.65 %); ferritin 1200 -> 180 ng/mL: -1020 (-85 %)
    b = Builder()
    b.lab("fvc-pct", B, 68, "%").lab("fvc-pct", F, 80, "%")
    b.lab("ferritin", B, 1200, "ng/mL").lab("ferritin", F, 180, "ug/L")
    out = changes(b)
    assert (out["fvc-pct-predicted"]["change"], out["fvc-pct-predicted"]["change_pct"]) == (12, pytest.approx(17.6471))
    assert (out["ferritin"]["change"], out["ferritin"]["change_pct"]) == (-1020, -85)


def test_dlco_percent_computed_from_measured_and_predicted():
    # 12.0 / 26.0 x 100 = 46.15 %; 15.6 / 26.0 x 100 = 60 %: derived, both parts named as sources
    b = Builder()
    for day, measured in ((B, 12.0), (F, 15.6)):
        b.lab("dlco", day, measured, "mL/min/mm[Hg]").lab("dlco-predicted", day, 26.0, "mL/min/mm[Hg]")
    row = changes(b)["dlco-pct-predicted"]
    assert row["baseline"]["value"] == pytest.approx(46.1538)
    assert row["follow_up"]["value"] == 60
    assert "derived" in row["baseline"] and " + " in row["baseline"]["source"]


def test_reported_dlco_percent_wins_over_the_computed_one():
    b = Builder()
    b.lab("dlco-pct", B, 45, "%").lab("dlco", B, 12.0, "mL/min/mm[Hg]").lab("dlco-predicted", B, 26.0, "mL/min/mm[Hg]")
    assert changes(b)["dlco-pct-predicted"]["baseline"]["value"] == 45


def test_b_cells_absolute_from_percent_times_lymphocytes():
    # CD19 12 % x 0.6 x10^9/L = 0.072 x10^9/L = 72 /uL; 12 % x 1.4 = 168 /uL: derived and flagged
    b = Builder()
    b.lab("cd19-pct", B, 12.0, "%").lab("lymphocytes", B, 0.6, "10*9/L")
    b.lab("cd19-pct", F, 12.0, "%").lab("lymphocytes", F, 1.4, "10*9/L")
    row = changes(b)["cd19"]
    assert (row["baseline"]["value"], row["follow_up"]["value"], row["change"]) == (72, 168, 96)
    assert row["baseline"]["derived"].startswith("cd19-pct")


def test_percent_without_a_same_day_count_gives_nothing():
    b = Builder()
    b.lab("cd19-pct", B, 12.0, "%").lab("lymphocytes", date(2025, 1, 9), 0.6, "10*9/L")
    assert changes(b)["cd19"]["baseline"] is None


def test_pf_ratio_derived_and_never_assuming_room_air():
    # PaO2 80 mmHg on FiO2 40 % -> 80 / 0.40 = 200; PaO2 alone gives no ratio
    b = Builder()
    b.lab("pao2", B, 80, "mm[Hg]").lab("fio2", B, 40, "%")
    b.lab("pao2", F, 90, "mm[Hg]")
    row = changes(b)["pf-ratio"]
    assert row["baseline"]["value"] == 200 and row["follow_up"] is None


def signals(b: Builder, end: date | None = None) -> list[dict]:
    readings = read_readings(b.record(), CAT, lab_concepts(SETTINGS.safety))
    return safety_signals(b.record(), CAT, readings, SETTINGS.safety, B, end)


def test_new_infections_after_baseline_only():
    # herpes zoster (SNOMED 4740000) 4 months after baseline: a signal; PJP (ICD-10 B59) before baseline: none
    b = Builder().condition("4740000", "2025-05-10").condition("B59", "2024-12-01", "http://hl7.org/fhir/sid/icd-10")
    out = signals(b)
    assert [(s["signal"], s["concept"]) for s in out] == [("new-infection", "herpes-zoster")]


def test_infection_already_present_at_baseline_is_not_new():
    b = Builder().condition("4740000", "2024-12-01").condition("4740000", "2025-05-10")
    assert signals(b) == []


@pytest.mark.parametrize(("wbc", "lymph", "expected"), [
    (3.0, 0.5, []),                             # at the limits: not below
    (2.9, 0.5, ["wbc"]),
    (3.5, 0.4, ["lymphocytes"]),
])
def test_cytopenias(wbc, lymph, expected):
    b = Builder().lab("wbc", "2025-04-10", wbc, "10*9/L").lab("lymphocytes", "2025-04-10", lymph, "10*9/L")
    assert [s["concept"] for s in signals(b) if s["signal"] == "cytopenia"] == expected


def test_cytopenia_before_baseline_is_not_a_signal():
    assert signals(Builder().lab("wbc", "2025-01-01", 2.0, "10*9/L")) == []


@pytest.mark.parametrize(("alt", "flagged"), [(149, False), (150, True), (160, True)])
def test_liver_enzyme_rise_at_three_times_uln(alt, flagged):
    # ULN 50: 3 x 50 = 150 U/L; >= 150 flags
    b = Builder().lab("alt", "2025-02-10", alt, "U/L", 50)
    assert any(s["signal"] == "liver-enzyme-rise" for s in signals(b)) is flagged


def test_liver_enzyme_without_uln_is_said_not_checked():
    b = Builder().obs(LOINC, "1742-6", "2025-02-10", 500, "U/L")
    assert [s["signal"] for s in signals(b)] == ["liver-enzyme-unknown-uln"]


def test_signals_stop_at_the_end_date():
    b = Builder().lab("wbc", "2026-03-01", 2.0, "10*9/L")
    assert signals(b, end=F) == [] and len(signals(b)) == 1
