"""Age and sex of a screen result line: cases a reader can check by hand."""

from __future__ import annotations

from datetime import date

import pytest

from fhir_adapter.record.demographics import age_on, demographic_fields

ON = date(2026, 6, 30)


@pytest.mark.parametrize(("birth", "age"), [
    ("1980-06-30", 46),   # birthday on the screening date: already 46
    ("1980-07-01", 45),   # birthday the next day: still 45
    ("2008-02-29", 18),   # born on a leap day: 18 on 2026-06-30
    ("2026-06-30", 0),
    ("1980", None),       # year only: the age is not known to the year
    ("1980-06", None),    # year-month: not known either (45 or 46)
    ("1980-13-01", None),  # not a date
    ("2027-01-01", None),  # after the screening date
    (19800630, None),     # not text
    (None, None),
])
def test_age_in_whole_years_from_a_full_birth_date(birth: object, age: int | None) -> None:
    assert age_on(birth, ON) == age


def test_sex_is_the_administrative_gender_or_null() -> None:
    assert demographic_fields({"gender": "female", "birthDate": "1990-01-15"}, ON) == {"age": 36, "sex": "female"}
    assert demographic_fields({"gender": "F"}, ON) == {"age": None, "sex": None}  # not a FHIR code: never guessed
    assert demographic_fields(None, ON) == {"age": None, "sex": None}
