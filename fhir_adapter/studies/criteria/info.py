"""Information items: facts reported beside the criteria for a study coordinator, never part of the status.

NCT04966884: "Patients were received a glucocorticoids (0.8mg-1mg/kg/day) and a combination with tofacitinib
(at a dose of 5 mg twice daily)" is the study's intervention, not an entry criterion; the current glucocorticoid
dose and any JAK-inhibitor use are reported so a person can see where a patient stands against that regimen.
"With or without ILD": ILD is reported as present or absent, never screened on.
"""

from __future__ import annotations

from typing import Any

from fhir_adapter.studies.criteria.base import Ctx, as_details, fmt, information, to_map
from fhir_adapter.terminology.exposure import DRUG_TYPES, Exposure, current_glucocorticoid_dose


def _round(x: float | None, places: int = 3) -> float | None:
    return None if x is None else round(x, places)


def _in_range(value: float | None, complete: bool, lo: float, hi: float) -> bool | None:
    """Whether a dose lies in [lo, hi]; an incomplete dose is a lower bound, so only "above" can be said."""
    if value is None:
        return None
    v = round(value, 6)
    if complete:
        return lo <= v <= hi
    return False if v > hi else None


def _possible(ctx: Ctx, out: dict[str, Any], types: Any, **sought: Any) -> str | None:
    """Records whose codes map to nothing but whose names say they may be what the item reports on: listed in
    ``out["unmapped"]``; the text to add to the reason (None when there are none)."""
    found = ctx.possible(types, **sought)
    if not found:
        return None
    out["unmapped"] = as_details(found)
    return f"records whose codes map to nothing may be more: {to_map(found)}"


def _no_drug_data(ctx: Ctx) -> str | None:
    """Why the medication records cannot show an absence (None: absence counts, per ``absent_records``)."""
    if not ctx.holds_drugs():
        return "no medication records for this patient"
    if ctx.setting("absent_records") == "unknown":
        return f"not recorded among {ctx.drug_record_count()} medication records (absent_records=unknown)"
    return None


@information("glucocorticoid_dose")
def glucocorticoid_dose(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    """The prednisone-equivalent dose (mg/day, mg/kg/day) of the systemic glucocorticoids active on S, the weight
    used (latest in ``weight_lookback_days``), and whether it lies in the regimen's range (information only)."""
    lo, hi = p["regimen_mg_per_kg_day"]
    days = ctx.setting("weight_lookback_days")
    weight, unusable = ctx.latest_weight(days)
    kg = weight.value if weight is not None else None
    out: dict[str, Any] = {"on": ctx.S.isoformat(), "prednisone_equivalent_mg_per_day": None,
                           "mg_per_kg_per_day": None, "weight": None, "complete": False, "drugs": [], "sources": [],
                           "regimen_mg_per_kg_per_day": [lo, hi], "in_regimen_range": None}
    if weight is not None:
        out["weight"] = {"kg": _round(kg, 1), "date": weight.fact.when.isoformat() if weight.fact.when else None,
                         "source": weight.fact.ref}
    reasons: list[str] = []
    gcs = ctx.exposures_of(classes=p["classes"])
    dose = current_glucocorticoid_dose(gcs, ctx.S, kg)
    unmapped = _possible(ctx, out, DRUG_TYPES, classes=p["classes"])
    if not dose.parts and not dose.missing and not dose.uncertain:
        why = _no_drug_data(ctx) or unmapped
        if why:
            out["reason"] = f"glucocorticoid dose unknown: {why}"
            out["summary"] = f"GC dose unknown ({'unmapped drug codes' if unmapped else 'no medication data'})"
            return out
    out["prednisone_equivalent_mg_per_day"] = _round(dose.peq_mg_day, 2)
    out["complete"] = dose.complete and not unmapped
    if unmapped:
        reasons.append(unmapped)
    out["drugs"] = [{"drug": part.concept_id, "mg_per_day": _round(part.mg_per_day, 2),
                     "prednisone_factor": part.factor,
                     "prednisone_equivalent_mg_per_day": _round(part.peq_mg_per_day, 2),
                     "source": part.source} for part in dose.parts]
    out["sources"] = list(dose.sources)
    if dose.missing:
        out["missing"] = [{"source": s, "reason": r} for s, r in dose.missing]
        reasons.append("dose not counted for " + "; ".join(f"{s} ({r})" for s, r in dose.missing))
    if dose.uncertain:
        out["uncertain"] = list(dose.uncertain)
        reasons.append("may or may not be active on the screening date: " + ", ".join(dose.uncertain))
    if dose.not_systemic:
        out["not_systemic"] = list(dose.not_systemic)
    none_taken = not dose.parts and dose.complete
    if none_taken:
        reasons.append(f"no systemic glucocorticoid active on {ctx.S} among {ctx.drug_record_count()} medication "
                       "records")
        out["mg_per_kg_per_day"], out["in_regimen_range"] = 0.0, False
    elif weight is None:
        bad = f"; unusable: {unusable[0].shown}" if unusable else ""
        reasons.append(f"mg/kg/day not computed: no body weight in the {days} days before screening{bad}")
    else:
        out["mg_per_kg_per_day"] = _round(dose.mg_per_kg_day)
        out["in_regimen_range"] = _in_range(dose.mg_per_kg_day, out["complete"], lo, hi)
    if not out["complete"]:
        reasons.append("the dose is a lower bound")
    if reasons:
        out["reason"] = "; ".join(reasons)
    peq = f"{fmt(dose.peq_mg_day)}{'+' if not out['complete'] else ''} mg/d PEQ"
    if none_taken:
        out["summary"] = f"no GC on {ctx.S}"
    elif out["mg_per_kg_per_day"] is None:
        out["summary"] = f"GC {peq}, mg/kg/d unknown (no weight)"
    else:
        where = {True: "in", False: "outside", None: "undecided vs"}[out["in_regimen_range"]]
        out["summary"] = f"GC {peq} = {out['mg_per_kg_per_day']:.2f} mg/kg/d ({where} {lo}-{hi})"
    return out


def _timing(e: Exposure, ctx: Ctx) -> tuple[str, bool | None]:
    if e.start is not None and e.start > ctx.S:
        return "starts after the screening date", False
    active = e.active_on(ctx.S)
    return {True: "current", False: "past", None: "undetermined (dates or status do not say)"}[active], active


@information("drug_use")
def drug_use(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    """Every recorded (taken, ordered or given) use of a drug class, with its dates and whether it is current on
    S (NCT04966884: prior or current JAK-inhibitor use)."""
    label = p["label"]
    found = sorted(ctx.exposures_of(classes=p["classes"]), key=lambda e: (e.start is None, e.start, e.source))
    drugs = []
    for e in found:
        timing, active = _timing(e, ctx)
        drugs.append({"drug": e.concept.id, "product": e.product or e.concept.display,
                      "start": e.start.isoformat() if e.start else None,
                      "end": e.end.isoformat() if e.end else None, "status": e.status, "timing": timing,
                      "current": active, "mg_per_day": _round(e.daily_mg, 2), "source": e.source})
    out: dict[str, Any] = {"any": bool(drugs), "current": None, "drugs": drugs,
                           "sources": list(dict.fromkeys(d["source"] for d in drugs))}
    unmapped = _possible(ctx, out, DRUG_TYPES, classes=p["classes"])
    if drugs:
        flags = [d["current"] for d in drugs]
        out["current"] = True if True in flags else (None if None in flags else False)
        seen: dict[str, str] = {}
        for d in drugs:
            seen.setdefault(d["drug"], f"{d['drug']} {d['timing'].split(' (')[0]}"
                            + (f" from {d['start']}" if d["start"] else ""))
        out["summary"] = f"{p.get('short', label)}: " + ", ".join(seen.values())
        if unmapped:
            out["reason"] = unmapped
            if out["current"] is False:
                out["current"] = None
        return out
    why = _no_drug_data(ctx) or unmapped
    if why:
        out.update({"any": None, "reason": f"{label} use unknown: {why}",
                    "summary": f"{p.get('short', label)} unknown"})
    else:
        out.update({"current": False, "reason": f"no {label} among {ctx.drug_record_count()} medication records",
                    "summary": f"no {p.get('short', label)}"})
    return out


@information("condition_present")
def condition_present(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    """Whether a condition is coded by S (NCT04966884: ILD, reported only: the population is anti-MDA5+ DM
    "with or without" ILD)."""
    label = p["label"]
    found = ctx.conditions_of(p["concepts"])
    out: dict[str, Any] = {"present": None, "conditions": [], "sources": []}
    if found:
        out["present"] = True
        out["conditions"] = [{"text": c.text or c.concepts[0].display,
                              "onset": c.start.isoformat() if c.start else None,
                              "active": c.active_on(ctx.S), "source": c.ref} for c in found]
        out["sources"] = [c.ref for c in found]
        out["summary"] = f"{label} coded"
        return out
    n = len(ctx.record.of("Condition"))
    unmapped = _possible(ctx, out, ["Condition"], concepts=p["concepts"])
    if unmapped:
        out.update({"reason": f"{label} not coded; {unmapped}", "summary": f"{label} unknown (unmapped codes)"})
    elif n and ctx.setting("absent_records") == "absent-when-type-held":
        out.update({"present": False, "reason": f"no {label} among {n} Condition records",
                    "summary": f"no {label} coded"})
    else:
        out.update({"reason": f"{label} not recorded ({n} Condition records; absence not counted)",
                    "summary": f"{label} unknown"})
    return out

