"""Inactive disease (NCT04966884; criteria-tables.md R1), three-valued.

Seed: "Inactive disease was defined as meeting the following three criteria: CK<=200U/L, physician visual
analogue scale(VAS) =0, and myositis disease activity assessment visual analog scales (MYOACT) scores =0.
Otherwise, the disease condition was considered to be active."

The three values come from one visit: the visit is the date, among the components' values within the
follow-up window, nearest the follow-up date; each component is its value nearest that visit within the
tolerance (studies/response.json ``inactive_disease.visit_tolerance_days``).

- false as soon as one present value fails (CK > 200 U/L, physician VAS > 0, any MYOACT score > 0);
- true when all three are present and pass;
- unknown (None) only when none fails and one is missing.

MYOACT = 0 (clinical.md §3): a MYOACT total of 0 with no organ score above 0; or, without a total, every
extramuscular organ VAS present and 0. An organ score above 0 (the muscle VAS too: the seed says "scores")
fails it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from fhir_adapter.response.readings import Reading, Readings, _num, nearest


@dataclass(frozen=True, slots=True)
class InactiveRules:
    ck_max: float = 200.0
    phga_max: float = 0.0
    myoact_max: float = 0.0
    tolerance_days: int = 7
    ck_concept: str = "ck"
    phga_concept: str = "phga-vas"
    total_concept: str = "myoact-total"
    organs: tuple[str, ...] = ()  # every MYOACT organ VAS concept
    extramuscular: tuple[str, ...] = ()  # the organs whose sum is the MYOACT total

    @property
    def concepts(self) -> set[str]:
        return {self.ck_concept, self.phga_concept, self.total_concept, *self.organs, *self.extramuscular}


def _at_most(value: float | None, limit: float) -> bool | None:
    return None if value is None else round(value, 6) <= limit


def _row(r: Reading | None, met: bool | None, threshold: str) -> dict[str, Any]:
    out: dict[str, Any] = {"met": met, "threshold": threshold}
    if r is not None:
        out.update(value=_num(r.value), unit=r.unit, date=r.when.isoformat(), source=r.source)
        if r.reported:
            out["reported"] = r.reported
    return out


def _and(values: list[bool | None]) -> bool | None:
    if any(v is False for v in values):
        return False
    return True if all(v is True for v in values) else None


def inactive_disease(readings: Readings, follow_up: date, window_days: int, rules: InactiveRules,
                     after: date | None = None) -> dict[str, Any]:
    """Inactive disease at the visit nearest ``follow_up``: ``value`` true, false or None, with each component."""
    candidates = [r for c in rules.concepts for r in readings.usable(c)
                  if abs((r.when - follow_up).days) <= window_days and (after is None or r.when > after)]
    if not candidates:
        return {"value": None, "visit_date": None, "components": {},
                "problems": [f"no CK, physician VAS or MYOACT value within {window_days} days of {follow_up}"]}
    best = min(abs((r.when - follow_up).days) for r in candidates)
    visit = min(r.when for r in candidates if abs((r.when - follow_up).days) == best)
    tol = rules.tolerance_days

    def pick(concept: str) -> Reading | None:
        return nearest(readings.of(concept), visit, tol, after=after).reading

    ck, phga = pick(rules.ck_concept), pick(rules.phga_concept)
    ck_ok, phga_ok = _at_most(ck.value if ck else None, rules.ck_max), _at_most(phga.value if phga else None,
                                                                             rules.phga_max)
    total = pick(rules.total_concept)
    organs = {c: pick(c) for c in rules.organs}
    organ_rows = {c: _row(r, _at_most(r.value, rules.myoact_max), f"<= {rules.myoact_max:g}")
                  for c, r in organs.items() if r is not None}
    total_ok = _at_most(total.value if total else None, rules.myoact_max)
    organ_fail = any(row["met"] is False for row in organ_rows.values())
    if total_ok is False or organ_fail:
        myoact_ok: bool | None = False
    elif total_ok is True:
        myoact_ok = True
    else:
        myoact_ok = True if rules.extramuscular and all(
            organs.get(c) is not None and organ_rows[c]["met"] for c in rules.extramuscular) else None
    myoact = _row(total, myoact_ok, f"MYOACT = {rules.myoact_max:g}")
    if organ_rows:
        myoact["organs"] = organ_rows
    components = {
        "ck": _row(ck, ck_ok, f"<= {rules.ck_max:g} U/L"),
        "phga": _row(phga, phga_ok, f"= {rules.phga_max:g}" if rules.phga_max == 0 else f"<= {rules.phga_max:g}"),
        "myoact": myoact,
    }
    problems = [f"{name}: no value within {tol} days of the visit {visit}" for name, row in components.items()
                if row["met"] is None]
    out: dict[str, Any] = {"value": _and([ck_ok, phga_ok, myoact_ok]), "visit_date": visit.isoformat(),
                           "components": components}
    if problems:
        out["problems"] = problems
    return out
