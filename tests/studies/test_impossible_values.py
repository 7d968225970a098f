"""Values that cannot be true are set aside and named where a criterion reads them: an invalid date, a negative
count, a quantity without the unit its concept needs. Never silently used, never silently dropped."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from fhir_adapter.record.dates import date_problem, fhir_date
from tests.studies.helpers import LOCAL_LAB, LOINC, SITE, UCUM, Rec, result


@pytest.mark.parametrize(("text", "want"), [
    ("2026-02-28", date(2026, 2, 28)), ("2026-02", date(2026, 2, 1)), ("2026", date(2026, 1, 1)),
    ("2026-06-20T08:30:00+08:00", date(2026, 6, 20)), ("2026-06-20T08:30:00Z", date(2026, 6, 20)),
    ("2026-06-20T08:30:00.123+08:00", date(2026, 6, 20)), ("2026-06-20T08:30", date(2026, 6, 20)),
    ("2024-02-29", date(2024, 2, 29)),
    ("2026-02-30", None), ("2026-13-01", None), ("2026-00-10", None), ("2026-02-30T08:00:00Z", None),
    ("20260105", None), ("202601", None), ("2026/01/05", None), ("2026-1-5", None), ("2026-01-05x", None),
    ("not a date", None), ("", None), (20260105, None), (None, None), ("2025-02-29", None),
])
def test_fhir_dates_are_read_strictly(text: Any, want: date | None) -> None:
    """A FHIR date is YYYY, YYYY-MM or YYYY-MM-DD (a dateTime adds a time): anything else is not a date,
    never a guess ('20260105' was once read as 2026-10-01)."""
    assert fhir_date(text) == want
    if want is None and isinstance(text, str) and text:
        assert date_problem(text)
    if want is not None:
        assert date_problem(text) is None


def test_period_end_of_a_partial_date() -> None:
    assert fhir_date("2026-02", end=True) == date(2026, 2, 28) and fhir_date("2026", end=True) == date(2026, 12, 31)


def _obs(rec: Rec, code: str, value: Any, unit: str | None, when: str = "2026-06-27", **extra: Any) -> Rec:
    q: dict[str, Any] = {"value": value}
    if unit:
        q |= {"unit": unit, "system": UCUM, "code": unit}
    return rec.add("Observation", {"status": "final", "code": {"coding": [{"system": LOINC, "code": code}]},
                                   "effectiveDateTime": when, "valueQuantity": q, **extra})


def _base() -> Rec:
    return Rec().lab("29463-7", 58, "kg")


def test_negative_count_is_set_aside_and_named() -> None:
    """A lymphocyte count of -3 x10^9/L cannot be true: not read as 'below 0.5', named in the reason."""
    out = _obs(_base(), "26474-7", -3, "10*9/L").screen()
    c = out["criteria"]["E3c"]
    assert c["result"] == "unknown"
    assert "Observation/obs2 set aside: value -3 10*9/L cannot be negative" in c["reason"]


def test_impossible_newer_value_is_named_beside_the_older_one_that_decides() -> None:
    """An older good value decides; the newer impossible one is named, not silently skipped."""
    rec = _obs(_base(), "26474-7", 1.2, "10*9/L", when="2026-06-20")
    out = _obs(rec, "26474-7", -3, "10*9/L").screen()
    c = out["criteria"]["E3c"]
    assert c["result"] == "not-met"
    assert "Observation/obs3 set aside" in c["reason"] and "Observation/obs3" not in c["evidence"]
    assert c["needs_review"]


def test_invalid_date_is_named() -> None:
    """A WBC dated 2026-06-31 cannot be placed in the window: named, never silently dropped. One dated
    2026-02-30 lies before the 28-day window whatever its day means: not named (as the population path's
    prefilter skips it unparsed)."""
    out = _obs(_base(), "26464-8", 2.0, "10*9/L", when="2026-06-31").screen()
    c = out["criteria"]["E3a"]
    assert c["result"] == "unknown"
    assert "Observation/obs2 set aside: invalid date '2026-06-31'" in c["reason"]
    old = _obs(_base(), "26464-8", 2.0, "10*9/L", when="2026-02-30").screen()["criteria"]["E3a"]
    assert old["result"] == "unknown" and "set aside" not in old["reason"]


def test_missing_unit_is_named_and_a_site_default_unit_is_kept() -> None:
    """A WBC of 2.0 with no unit cannot be read as 10^9/L; a site file's unit for the code still applies."""
    out = _obs(_base(), "26464-8", 2.0, None).screen()
    c = out["criteria"]["E3a"]
    assert c["result"] == "unknown" and "Observation/obs2 set aside: no unit" in c["reason"]
    local = _base().lab("CBC-WBC", 2.0, None, system=LOCAL_LAB)  # the site file gives this code "10*9/L"
    assert result(local.screen(site=SITE), "E3a") == "met"


def test_absurd_magnitude_is_set_aside() -> None:
    """A platelet count of 1e12 x10^9/L is not a platelet count."""
    out = _obs(_base(), "26515-7", 1e12, "10*9/L").screen()
    c = out["criteria"]["E3e"]
    assert c["result"] == "unknown" and "set aside" in c["reason"]


def test_invalid_date_on_a_serology_result_is_named() -> None:
    """E7: an HIV test dated 2026-13-01 is named, not taken as 'no HIV test'."""
    rec = _base().add("Observation", {"status": "final", "code": {"coding": [{"system": LOINC, "code": "56888-1"}]},
                                      "effectiveDateTime": "2026-13-01",
                                      "valueCodeableConcept": {"text": "reactive"}})
    c = rec.screen()["criteria"]["E7"]
    assert c["result"] == "unknown" and "invalid date '2026-13-01'" in c["reason"]


def test_invalid_abatement_date_does_not_make_tb_active() -> None:
    """E5a: a TB condition whose abatement date cannot be read is neither taken as active nor as resolved."""
    rec = _base().cond("A15.0", offset=-400, abatementDateTime="2025-02-30")
    c = rec.screen()["criteria"]["E5a"]
    assert c["result"] == "unknown"
    assert "invalid date '2025-02-30'" in c["reason"]


def test_every_result_no_window_can_place_is_named_in_the_screen() -> None:
    """A body weight dated 2026-02-30 cannot count for I1 ("no body weight in the 90 days"), and whichever
    criterion would have read it, the screen names it under ``set_aside`` instead of dropping it silently."""
    rec = Rec().lab("29463-7", 58, "kg", offset=-3)
    rec.res["Observation"][-1]["effectiveDateTime"] = "2026-02-30"
    out = rec.screen()
    assert out["criteria"]["I1"]["result"] == "unknown"
    weight = rec.res["Observation"][-1]["id"]
    assert out["set_aside"] == [f"Observation/{weight} set aside: invalid date '2026-02-30'"]
    assert "set_aside" not in Rec().lab("29463-7", 58, "kg").screen()
