"""FHIR ``date`` and ``dateTime`` values as calendar dates."""

from __future__ import annotations

import calendar
from datetime import date
from typing import Any


def fhir_date(value: Any, *, end: bool = False) -> date | None:
    """The calendar date of a FHIR date/dateTime as written (its local date, time zone ignored).

    A partial date ("2025", "2025-03") means its first day, or its last day when ``end`` is true (the end of
    a period). None for anything that is not a date.
    """
    if not isinstance(value, str) or len(value) < 4:
        return None
    try:
        year = int(value[:4])
        if len(value) < 7:
            return date(year, 12, 31) if end else date(year, 1, 1)
        month = int(value[5:7])
        if len(value) < 10:
            return date(year, month, calendar.monthrange(year, month)[1] if end else 1)
        return date(year, month, int(value[8:10]))
    except ValueError:
        return None
