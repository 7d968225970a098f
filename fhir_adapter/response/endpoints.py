"""Endpoint values and their change from baseline (criteria-tables.md R3-R6; PROMIS-MDA5 respiratory course).

NCT04966884 seed: "Secondary endpoints included safety measures and change from baseline in the following
index: percentage of predicted FVC (FVC % predicted) and percentage of predicted DLCO (DLCO% predicted), the
ferritin level, peripheral lymphocyte subsets."

Endpoints are data (studies/response.json ``endpoints``). A value reported directly wins; otherwise, on a date
where its parts share the day, it is derived and flagged ``derived``: DLCO % predicted = measured / predicted x
100; PaO2/FiO2 = PaO2 / (FiO2 % / 100); a lymphocyte subset's absolute count = its % x the lymphocyte count
(10^9/L x 1000 = /uL) / 100 (clinical.md §5).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from fhir_adapter.response.measures import Windows
from fhir_adapter.response.readings import (
    Reading,
    Readings,
    _num,
    latest_before,
    merge,
    nearest,
    same_day_product,
    same_day_ratio,
)


def concepts_of(definitions: Mapping[str, Mapping[str, Any]], names: tuple[str, ...]) -> set[str]:
    out: set[str] = set()
    for name in names:
        d = definitions[name]
        out.add(d["concept"])
        if "ratio" in d:
            out.update((d["ratio"]["numerator"], d["ratio"]["denominator"]))
        if "from_percent" in d:
            out.update((d["from_percent"]["percent"], d["from_percent"]["total"]))
    return out


def series(readings: Readings, definition: Mapping[str, Any]) -> list[Reading]:
    """Every value of one endpoint: direct readings, plus derived ones on days without a direct one."""
    concept, unit = definition["concept"], definition.get("unit")
    direct = readings.of(concept)
    derived: list[Reading] = []
    if "ratio" in definition:
        r = definition["ratio"]
        derived = same_day_ratio(readings.of(r["numerator"]), readings.of(r["denominator"]), concept, unit,
                                 float(r.get("factor", 1)), f"{r['numerator']} / {r['denominator']} x "
                                 f"{r.get('factor', 1)}")
    elif "from_percent" in definition:
        p = definition["from_percent"]
        derived = same_day_product(readings.of(p["percent"]), readings.of(p["total"]), concept, unit,
                                   float(p.get("total_factor", 1)), f"{p['percent']} % x {p['total']} "
                                   f"x {p.get('total_factor', 1)} / 100")
    return merge(direct, derived) if derived else list(direct)


def change(values: list[Reading], baseline: date, follow_up: date, w: Windows) -> dict[str, Any]:
    """Baseline and follow-up values (same windows as the TIS) and the change: absolute and relative %."""
    pb = latest_before(values, baseline, w.baseline_days)
    pf = nearest(values, follow_up, w.follow_up_days, after=baseline)
    b, f = pb.reading, pf.reading
    out: dict[str, Any] = {"baseline": b.describe() if b else None, "follow_up": f.describe() if f else None,
                           "change": None, "change_pct": None}
    if b is not None and f is not None and b.value is not None and f.value is not None:
        out["change"] = _num(f.value - b.value)
        out["change_pct"] = _num((f.value - b.value) / b.value * 100) if b.value else None
    problems = [*pb.problems(), *pf.problems()]
    if problems:
        out["problems"] = problems
    return out


def endpoint_changes(readings: Readings, definitions: Mapping[str, Mapping[str, Any]], names: tuple[str, ...],
                     baseline: date, follow_up: date, w: Windows) -> dict[str, Any]:
    """Each named endpoint's change from baseline to follow-up."""
    out: dict[str, Any] = {}
    for name in names:
        d = definitions[name]
        row = {"display": d.get("display", name), "unit": d.get("unit"),
               **change(series(readings, d), baseline, follow_up, w)}
        out[name] = row
    return out
