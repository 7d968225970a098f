"""Scores at every visit, for a time course (NCT04966884 recorded visits; PROMIS-MDA5 every 2 weeks to week 8).

- ``recorded-visits``: every date after baseline, up to the follow-up window's end, on which a core set
  measure was recorded (the tofacitinib sample: months 1, 3, 6, 9, 12);
- ``scheduled``: baseline + every_days, up to until_days (PROMIS-MDA5 seed: "Visit the clinic once every 2
  weeks" for "2 months": weeks 2, 4, 6, 8).

At each visit the TIS against baseline (values within the course window of the visit), inactive disease when
the study defines it, and the respiratory values against baseline (PROMIS-MDA5: "Does tocilizumab improve
patients' respiratory failure?").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date, timedelta
from typing import Any

from fhir_adapter.response.endpoints import change, series
from fhir_adapter.response.measures import Windows, core_set
from fhir_adapter.response.readings import Readings
from fhir_adapter.response.tis import TisRules


def recorded_visits(readings: Readings, concepts: set[str], baseline: date, end: date) -> list[date]:
    days = {r.when for c in concepts for r in readings.usable(c)}
    return sorted(d for d in days if baseline < d <= end)


def scheduled_visits(baseline: date, every_days: int, until_days: int) -> list[date]:
    return [baseline + timedelta(days=d) for d in range(every_days, until_days + 1, every_days)]


def visit_course(readings: Readings, rules: TisRules, visits: list[date], baseline: date, window: Windows,
                 population: str, *, endpoints: Mapping[str, Mapping[str, Any]] | None = None,
                 respiratory: tuple[str, ...] = (), inactive: Callable[[date], dict[str, Any]] | None = None,
                 uln_fallback: Mapping[str, float] | None = None) -> list[dict[str, Any]]:
    """One entry per visit: its TIS (with range, class, points per measure) and the other values asked for."""
    out: list[dict[str, Any]] = []
    for day in visits:
        cs = core_set(rules, readings, baseline, day, window, population, uln_fallback)
        r = cs.result
        entry: dict[str, Any] = {
            "date": day.isoformat(), "day": (day - baseline).days,
            "tis": r.tis, "tis_range": list(r.range), "category": r.category, "responder": r.responder,
            "points": {m.measure: m.points for m in r.measures}, "missing": list(r.missing),
        }
        if inactive is not None:
            entry["inactive_disease"] = inactive(day)["value"]
        if respiratory and endpoints is not None:
            entry["respiratory"] = {name: change(series(readings, endpoints[name]), baseline, day, window)
                                    for name in respiratory}
        out.append(entry)
    return out
