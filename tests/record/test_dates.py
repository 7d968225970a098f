"""FHIR date/dateTime values read strictly: the fast path for full dates and the general parser agree."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fhir_adapter.record.dates import date_problem, fhir_date


@pytest.mark.parametrize(("text", "want"), [
    ("2026-06-27", date(2026, 6, 27)), ("2026-06-27T08:00:00+08:00", date(2026, 6, 27)),
    ("2026-06-27T08:00", date(2026, 6, 27)), ("2026", date(2026, 1, 1)), ("2026-06", date(2026, 6, 1)),
    ("2026-02-30", None), ("2026-13-01", None), ("20260105", None), ("2026-06-27Tjunk", None),
    ("\uff12\uff10\uff12\uff16-01-05", None),  # full-width digits are not a FHIR date
    ("2026-06-27 08:00", None), (" 2026-06-27", None),
])
def test_dates_as_a_clinician_would_read_them(text: str, want: date | None) -> None:
    assert fhir_date(text) == want
    assert (date_problem(text) is None) == (want is not None)


def test_partial_dates_end_at_the_end_of_their_period() -> None:
    assert fhir_date("2024-02", end=True) == date(2024, 2, 29) and fhir_date("2025", end=True) == date(2025, 12, 31)


DATE_LIKE = st.from_regex(r"\A[0-9]{4}(-[0-9]{2}(-[0-9]{2}(T[0-9]{2}:[0-9]{2}(:[0-9]{2})?(Z|\+08:00)?)?)?)?\Z")


@given(st.one_of(DATE_LIKE, st.text(max_size=30), st.none(), st.integers()))
def test_a_value_is_a_date_exactly_when_no_problem_is_named(value: object) -> None:
    assert (fhir_date(value) is None) == (date_problem(value) is not None)
