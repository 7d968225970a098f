"""FHIR ``date`` and ``dateTime`` values as calendar dates, read strictly.

A FHIR date is ``YYYY``, ``YYYY-MM`` or ``YYYY-MM-DD``; a dateTime adds ``Thh:mm[:ss[.fff]]`` and a zone. Anything
else is not a date: never a guess (``20260105`` is not 2026-10-01, ``2026-02-30`` is not 2 March).
``date_problem`` says why a text is not a date, for the reason that names it.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Mapping
from datetime import date
from functools import lru_cache
from typing import Any

# the date part exactly; a time (when present) loosely: hh:mm, optional seconds and fraction, optional zone
_DATE = re.compile(r"(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?", re.ASCII)
_TIME = re.compile(r"T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2})?", re.ASCII)


def fhir_date(value: Any, *, end: bool = False) -> date | None:
    """The calendar date of a FHIR date/dateTime as written (its local date, time zone ignored).

    A partial date ("2025", "2025-03") means its first day, or its last day when ``end`` is true (the end of
    a period). None for anything that is not a valid FHIR date.
    """
    if type(value) is str and len(value) >= 10 and value[4] == "-" and value[7] == "-" and (
            len(value) == 10 or (value[10] == "T" and _TIME.fullmatch(value, 10))):  # the common case, uncached
        try:
            return date.fromisoformat(value[:10])
        except ValueError:  # "2026-02-30"
            return None
    if not isinstance(value, str):
        return None
    parsed = _parse(value)
    if isinstance(parsed, str):
        return None
    year, month, day = parsed
    if month is None:
        return date(year, 12, 31) if end else date(year, 1, 1)
    if day is None:
        return date(year, month, calendar.monthrange(year, month)[1] if end else 1)
    return date(year, month, day)


def date_problem(value: Any) -> str | None:
    """Why ``value`` is not a FHIR date ("invalid date '2026-02-30'"), or None when it is one."""
    if not isinstance(value, str):
        return f"invalid date {value!r} (not text)"
    parsed = _parse(value)
    return parsed if isinstance(parsed, str) else None


@lru_cache(maxsize=8192)
def _parse(value: str) -> tuple[int, int | None, int | None] | str:
    """(year, month, day) or the problem; cached per distinct text (a population repeats its dates)."""
    m = _DATE.match(value)
    if not m or (m.end() < len(value) and (m.group(3) is None or not _TIME.fullmatch(value, m.end()))):
        return f"invalid date {value!r}"
    year, month, day = int(m.group(1)), m.group(2), m.group(3)
    if year < 1 or (month is not None and not 1 <= int(month) <= 12):
        return f"invalid date {value!r}"
    if month is None:
        return year, None, None
    if day is None:
        return year, int(month), None
    if not 1 <= int(day) <= calendar.monthrange(year, int(month))[1]:
        return f"invalid date {value!r}"
    return year, int(month), int(day)


def observation_date_problem(obs: Mapping[str, Any]) -> str:
    """Why an Observation has no readable date: "invalid date '2026-02-30'" or "no effective date"."""
    period = obs.get("effectivePeriod")
    candidates = [obs.get(k) for k in ("effectiveDateTime", "effectiveInstant")]
    if isinstance(period, Mapping):
        candidates += [period.get("end"), period.get("start")]
    candidates.append(obs.get("issued"))
    for value in candidates:
        if value is not None:
            problem = date_problem(value)
            if problem:
                return problem
    return "no effective date"


def observation_date(obs: Mapping[str, Any]) -> date | None:
    for key in ("effectiveDateTime", "effectiveInstant"):
        if key in obs:
            return fhir_date(obs[key])
    period = obs.get("effectivePeriod")
    if isinstance(period, Mapping):
        return fhir_date(period.get("end")) or fhir_date(period.get("start"))
    return fhir_date(obs.get("issued"))
