"""The response's lymphocyte endpoint reads a count derived from the lymphocyte % and the WBC of one draw (same
Specimen, or the same minute when neither names one) on days without a measured count; never across draws. A
value that cannot be true is set aside with its reason. Worked by hand: 20% of WBC 5.0 = 1.0 x10^9/L at
baseline, 30% of WBC 6.0 = 1.8 x10^9/L at follow-up: change +0.8."""

from __future__ import annotations

from datetime import date

from fhir_adapter.response.endpoints import concepts_of, endpoint_changes
from fhir_adapter.response.measures import Windows
from fhir_adapter.response.readings import read_readings
from fhir_adapter.response.settings import load_settings
from fhir_adapter.terminology.catalog import Catalog

from .builders import LOINC, Builder

CAT = Catalog.load()
SETTINGS = load_settings()
B, F = date(2025, 1, 10), date(2026, 1, 10)


def _changes(b: Builder) -> dict:
    readings = read_readings(b.record(), CAT, concepts_of(SETTINGS.endpoints, ("lymphocytes",)))
    return endpoint_changes(readings, SETTINGS.endpoints, ("lymphocytes",), B, F, Windows())["lymphocytes"]


def test_lymphocytes_derived_from_percent_and_wbc_of_one_draw() -> None:
    b = Builder().lab("wbc", B, 5.0, "10*9/L").obs(LOINC, "736-9", B, 20, "%")
    b.lab("wbc", F, 6.0, "10*9/L").obs(LOINC, "736-9", F, 30, "%")
    out = _changes(b)
    assert out["change"] == 0.8
    assert out["baseline"]["derived"].startswith("derived: 20% of WBC 5 10*9/L (Observation/o2, Observation/o1)")


def test_measured_count_wins_and_other_draws_are_not_combined() -> None:
    b = Builder().lab("wbc", B, 5.0, "10*9/L").obs(LOINC, "736-9", B, 20, "%").lab("lymphocytes", B, 1.5, "10*9/L")
    b.lab("wbc", F, 6.0, "10*9/L").obs(LOINC, "736-9", F, 30, "%")
    b.observations[-1]["effectiveDateTime"] = f"{F}T11:00:00+08:00"  # another draw the same day
    out = _changes(b)
    assert out["baseline"]["value"] == 1.5 and "derived" not in out["baseline"]
    assert out["follow_up"] is None


def test_negative_count_is_never_read() -> None:
    readings = read_readings(Builder().lab("lymphocytes", B, -3, "10*9/L").record(), CAT, ["lymphocytes"])
    (r,) = readings.of("lymphocytes")
    assert not r.usable and r.problem == "value -3 10*9/L cannot be negative"
