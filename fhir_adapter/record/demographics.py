"""Age and sex for a screen result line, so a worklist can show them beside the MRN without reading the Patient
again.

- ``age``: whole years on the screening date, from a full ``Patient.birthDate`` (YYYY-MM-DD); ``None`` for a
  partial date (year or year-month), a malformed one, or a birth date after the screening date. Whether the patient
  is old enough for the study is criterion I1's business, not this field's.
- ``sex``: ``Patient.gender`` (administrative gender: male, female, other, unknown); ``None`` when absent or not
  one of those codes.
"""

from __future__ import annotations

from datetime import date
from typing import Any

GENDERS = frozenset({"male", "female", "other", "unknown"})


def age_on(birth: Any, on: date) -> int | None:
    """Whole years from ``birth`` (FHIR date text) to ``on``; None unless ``birth`` is a full date not after ``on``."""
    if not isinstance(birth, str) or len(birth) != 10:
        return None
    try:
        born = date.fromisoformat(birth)
    except ValueError:
        return None
    if born > on:
        return None
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def demographic_fields(patient: dict[str, Any] | None, on: date) -> dict[str, Any]:
    """``{"age": ..., "sex": ...}`` for a result line (module docstring)."""
    patient = patient or {}
    gender = patient.get("gender")
    return {"age": age_on(patient.get("birthDate"), on), "sex": gender if gender in GENDERS else None}
