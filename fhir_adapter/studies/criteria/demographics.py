"""I1: "Age ≥ 18 years and < 65 years; no gender restriction; total body weight ≥ 45 kg"; NCT04966884 T2 (adult)."""

from __future__ import annotations

from typing import Any

from fhir_adapter.studies.criteria.base import Ctx, fmt, rule
from fhir_adapter.studies.evidence import add_years
from fhir_adapter.studies.result import CriterionResult, met, not_met, unknown


@rule("age_weight")
def age_weight(ctx: Ctx, p: dict[str, Any]) -> CriterionResult:
    """Age at S in [min_age, max_age) (``i1_upper_age``: lt65 from the criterion text, le65 from the registry
    header "18 to 65"); latest body weight in the look-back ≥ min_weight_kg ([lb_av] converted).

    ``max_age`` and ``min_weight_kg`` may be null or left out (NCT04966884 T2 "adult": age ≥ 18 only); then
    neither the upper bound (nor its setting) nor the weight is looked at."""
    patient = f"Patient/{ctx.record.patient_id}"
    age = ctx.age_on(ctx.S)
    lo, hi, min_kg = p["min_age"], p.get("max_age"), p.get("min_weight_kg")
    upper = ctx.setting("i1_upper_age") if hi is not None else None
    problems: list[CriterionResult] = []
    if age is None:
        problems.append(unknown("no birth date", "Patient.birthDate missing", [patient]))
    elif age < lo:
        r = not_met(f"age {age} at screening (< {lo})", [patient])
        r.passes_from = add_years(ctx.birth_date, lo)  # type: ignore[arg-type]
        problems.append(r)
    elif hi is not None and (age > hi or (age == hi and upper == "lt65")):
        r = not_met(f"age {age} at screening (must be < {hi})", [patient]).setting("i1_upper_age", upper)
        if age == hi:
            r.review(f"exactly {hi}: the criterion says < {hi}, the registry header says 18 to {hi}")
        problems.append(r)
    if min_kg is None:
        return _first_failure(problems) or met(f"age {age} at screening (≥ {lo})", [patient])
    weight, unusable = ctx.latest_weight(ctx.setting("weight_lookback_days"))
    days = ctx.setting("weight_lookback_days")
    if weight is None:
        why = f"; unusable: {unusable[0].shown}" if unusable else ""
        problems.append(unknown(f"no body weight in the {days} days before screening{why}",
                                f"no body weight recorded in [S-{days}d, S]", [v.fact.ref for v in unusable]))
    elif weight.value < min_kg:  # type: ignore[operator]
        problems.append(not_met(f"body weight {fmt(weight.value)} kg on {weight.fact.when} "  # type: ignore[arg-type]
                                f"(< {min_kg} kg)", [weight.fact.ref]))
    first = _first_failure(problems)
    if first:
        return first
    r = met(f"age {age}, body weight {fmt(weight.value)} kg on {weight.fact.when}",  # type: ignore[union-attr,arg-type]
            [patient, weight.fact.ref])  # type: ignore[union-attr]
    if age == hi:
        r.setting("i1_upper_age", upper).review(f"exactly {hi}: the registry header allows it, the criterion does not")
    return r


def _first_failure(problems: list[CriterionResult]) -> CriterionResult | None:
    """The failures joined into one (no single ``passes_from`` then), else the first unknown, else None."""
    failed = [r for r in problems if r.result == "not-met"]
    if failed:
        out = failed[0]
        for r in failed[1:]:
            out.reason += f"; {r.reason}"
            out.evidence += r.evidence
            out.passes_from = None
        return out
    return problems[0] if problems else None
