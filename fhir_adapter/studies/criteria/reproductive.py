"""I7 (negative pregnancy test at study entry) and E16 (pregnant or lactating)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fhir_adapter.studies.criteria.base import Ctx, rule
from fhir_adapter.studies.result import CriterionResult, met, not_met, unknown


def _hcg(ctx: Ctx, p: dict[str, Any]) -> list[tuple[Any, str | None]]:
    start = ctx.S - timedelta(days=ctx.setting("hcg_days_before_screening"))
    return ctx.results(p["hcg_concepts"], start, max(ctx.S, ctx.R))


@rule("pregnancy_test")
def pregnancy_test(ctx: Ctx, p: dict[str, Any]) -> CriterionResult:
    """I7: "Women of childbearing potential must have a negative pregnancy test at study entry" (contraception
    and intent are a person's part: flagged). Men: met. Women from the configured age: met as not of
    childbearing potential, flagged."""
    patient = f"Patient/{ctx.record.patient_id}"
    if ctx.gender == "male":
        return met("male: no pregnancy test required", [patient])
    if ctx.gender != "female":
        return unknown(f"sex {ctx.gender or 'not recorded'}: whether a pregnancy test is required is unknown",
                       "Patient.gender", [patient])
    results = _hcg(ctx, p)
    days = ctx.setting("hcg_days_before_screening")
    if results:
        f, v = results[0]
        if v == "positive":
            return not_met(f"pregnancy test positive on {f.when}", [f.ref])
        if v == "negative":
            return met(f"pregnancy test negative on {f.when}", [f.ref]).review(
                "contraception agreement and no plan to conceive are confirmed by a person")
        return unknown(f"pregnancy test on {f.when} not readable", "a readable pregnancy test", [f.ref])
    age = ctx.age_on(ctx.S)
    cutoff = ctx.setting("i7_no_childbearing_potential_from_age")
    if age is not None and age >= cutoff:
        return met(f"woman aged {age}: taken as not of childbearing potential (no pregnancy test needed)",
                   [patient]).setting("i7_no_childbearing_potential_from_age", cutoff).review(
            "a person confirms she cannot become pregnant")
    return unknown(f"woman aged {age}: no pregnancy test from {days} days before screening to randomization",
                   f"a pregnancy test (hCG) in [S-{days}d, R]", [patient]).review(
        "childbearing potential (menopause, sterilisation) is confirmed by a person")


@rule("pregnant_or_lactating")
def pregnant_or_lactating(ctx: Ctx, p: dict[str, Any]) -> CriterionResult:
    """E16: "Pregnant or lactating women, or women planning to become pregnant or initiate lactation". Current
    pregnancy/lactation Conditions or a positive hCG decide; plans are a person's part (flagged for women)."""
    if ctx.gender == "male":
        return not_met("male", [f"Patient/{ctx.record.patient_id}"])
    max_days = p["pregnancy_max_days"]
    found = [c for c in ctx.conditions_of(p["condition_concepts"]) if c.active_on(ctx.S)
             and (c.start is None or (ctx.S - c.start).days <= max_days)]
    positive = [f for f, v in _hcg(ctx, p) if v == "positive"]
    if found or positive:
        what = [f"{c.text or c.concepts[0].display} since {c.start}" for c in found]
        what += [f"positive pregnancy test on {f.when}" for f in positive[:1]]
        return met("; ".join(what), [c.ref for c in found] + [f.ref for f in positive[:1]])
    def current(resource: Any) -> bool:  # an unmapped Condition counts only where a mapped one would
        c = ctx.condition_fact(resource)
        return c is not None and c.active_on(ctx.S) and (c.start is None or (
            ctx.S - c.start).days <= max_days)

    r = ctx.absence(["Condition"], "current pregnancy or lactation", concepts=p["condition_concepts"], among=current)
    if ctx.gender == "female":
        r.review("plans to become pregnant or breastfeed are asked by a person")
    return r
