"""I1: "Age ≥ 18 years and < 65 years; no gender restriction; total body weight ≥ 45 kg"."""

from __future__ import annotations

from typing import Any

from fhir_adapter.studies.criteria.base import Ctx, fmt, rule
from fhir_adapter.studies.evidence import add_years
from fhir_adapter.studies.result import CriterionResult, met, not_met, unknown


@rule("age_weight")
def age_weight(ctx: Ctx, p: dict[str, Any]) -> CriterionResult:
    """Age at S in [min_age, max_age) (``i1_upper_age``: lt65 from the criterion text, le65 from the registry
    header "18 to 65"); latest body weight in the look-back ≥ min_weight_kg ([lb_av] converted)."""
    patient = f"Patient/{ctx.record.patient_id}"
    age = ctx.age_on(ctx.S)
    upper = ctx.setting("i1_upper_age")
    lo, hi = p["min_age"], p["max_age"]
    problems: list[CriterionResult] = []
    if age is None:
        problems.append(unknown("no birth date", "Patient.birthDate missing", [patient]))
    elif age < lo:
        r = not_met(f"age {age} at screening (< {lo})", [patient])
        r.passes_from = add_years(ctx.birth_date, lo)  # type: ignore[arg-type]
        problems.append(r)
    elif age > hi or (age == hi and upper == "lt65"):
        r = not_met(f"age {age} at screening (must be < {hi})", [patient]).setting("i1_upper_age", upper)
        if age == hi:
            r.review(f"exactly {hi}: the criterion says < {hi}, the registry header says 18 to {hi}")
        problems.append(r)
    weight, unusable = ctx.latest_weight(ctx.setting("weight_lookback_days"))
    days = ctx.setting("weight_lookback_days")
    if weight is None:
        why = f"; unusable: {unusable[0].shown}" if unusable else ""
        problems.append(unknown(f"no body weight in the {days} days before screening{why}",
                                f"no body weight recorded in [S-{days}d, S]", [v.fact.ref for v in unusable]))
    elif weight.value < p["min_weight_kg"]:  # type: ignore[operator]
        problems.append(not_met(f"body weight {fmt(weight.value)} kg on {weight.fact.when} "  # type: ignore[arg-type]
                                f"(< {p['min_weight_kg']} kg)", [weight.fact.ref]))
    failed = [r for r in problems if r.result == "not-met"]
    if failed:
        out = failed[0]
        for r in failed[1:]:
            out.reason += f"; {r.reason}"
            out.evidence += r.evidence
            out.passes_from = None
        return out
    if problems:
        return problems[0]
    r = met(f"age {age}, body weight {fmt(weight.value)} kg on {weight.fact.when}",  # type: ignore[union-attr,arg-type]
            [patient, weight.fact.ref])  # type: ignore[union-attr]
    if age == hi:
        r.setting("i1_upper_age", upper).review(f"exactly {hi}: the registry header allows it, the criterion does not")
    return r
