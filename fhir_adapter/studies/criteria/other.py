"""E2 (ACS within 24 weeks, cerebrovascular disease), E9/E10 (allergies), E17 (malignancy within 5 years)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fhir_adapter.studies.criteria.base import Ctx, rule
from fhir_adapter.studies.evidence import add_years
from fhir_adapter.studies.result import CriterionResult, met, not_met, unknown


@rule("cardiovascular")
def cardiovascular(ctx: Ctx, p: dict[str, Any]) -> CriterionResult:
    """E2: "life-threatening complications, including but not limited to acute coronary syndrome ... within 24
    weeks prior to screening or any history of significant cerebrovascular disease". Coded events decide;
    "significant" and "other life-threatening complications" are a person's part (flagged)."""
    start = ctx.S - timedelta(days=7 * p["acs_weeks"])
    acs = ctx.conditions_of(p["acs_concepts"])
    recent = [c for c in acs if c.start is not None and c.start >= start]
    cvd = ctx.conditions_of(p["cerebrovascular_concepts"])
    if recent:
        c = max(recent, key=lambda c: c.start)  # type: ignore[arg-type,return-value]
        r = met(f"{c.text or 'acute coronary syndrome'} on {c.start} (within {p['acs_weeks']} weeks)", [c.ref])
        r.passes_from = c.start + timedelta(days=7 * p["acs_weeks"] + 1)  # type: ignore[operator]
        if cvd:
            r.passes_from = None
            r.reason += f"; {cvd[0].text or 'cerebrovascular disease'} ({cvd[0].start})"
            r.evidence.append(cvd[0].ref)
        return r
    if cvd:
        c = cvd[0]
        return met(f"cerebrovascular disease on file: {c.text or c.concepts[0].display} ({c.start})", [c.ref]).review(
            "'significant' cerebrovascular disease is a clinician's call")
    undated = [c for c in acs if c.start is None]
    if undated:
        return unknown(f"{undated[0].text or 'acute coronary syndrome'} without a date", "the date of the event",
                       [undated[0].ref])
    old = ctx.conditions_of(p.get("history_concepts", ()))
    r = ctx.absence(["Condition"], f"acute coronary syndrome within {p['acs_weeks']} weeks or cerebrovascular disease",
                    concepts=[*p["acs_concepts"], *p["cerebrovascular_concepts"]])
    if acs or old:
        r.reason = f"coronary event outside {p['acs_weeks']} weeks: " + ", ".join(
            f"{c.text or c.concepts[0].display} ({c.start})" for c in acs + old)
        r.evidence += [c.ref for c in acs + old]
    return r.review("other life-threatening complications are judged by a clinician")


@rule("allergy")
def allergy(ctx: Ctx, p: dict[str, Any]) -> CriterionResult:
    """E9 (tocilizumab or excipients) / E10 (sulfonamides): coded AllergyIntolerance (or an allergy-status
    Condition such as Z88.2); substance text alone is flagged for review, not decided."""
    wanted = set(p["concepts"]) | {c.id for cls in p.get("classes", ()) for c in ctx.catalog.members(cls)}
    coded = [(r, text) for r, concepts, text, _ in ctx.allergies if {c.id for c in concepts} & wanted]
    conds = ctx.conditions_of(p.get("condition_concepts", ()))
    if coded or conds:
        what = [f"allergy to {text or 'coded substance'}" for _, text in coded] + [
            f"{c.text or c.concepts[0].display} ({c.start})" for c in conds]
        r = met("; ".join(what), [r for r, _ in coded] + [c.ref for c in conds])
        return r.review(p["review"]) if p.get("review") else r
    sought = {"concepts": [*wanted, *p.get("condition_concepts", ())], "classes": p.get("classes", ()),
              "also": ["Condition"] if p.get("condition_concepts") else []}
    texts = [(r, text) for r, concepts, text, _ in ctx.allergies if not concepts
             and any(t in text.lower() for t in p["texts"])]
    if texts:
        return ctx.closed_world(unknown(f"allergy recorded as text only: {texts[0][1]!r}",
                                        "a person reads the allergy entry", [texts[0][0]]).review(),
                                ["AllergyIntolerance"], p["label"], **sought)
    r = ctx.absence(["AllergyIntolerance"], p["label"], **sought)
    if p.get("review") and r.result == "not-met":
        r.review(p["review"])
    return r


@rule("malignancy")
def malignancy(ctx: Ctx, p: dict[str, Any]) -> CriterionResult:
    """E17: "History of malignant tumors within the past 5 years (excluding adequately treated basal cell
    carcinoma of the skin, squamous cell carcinoma of the skin, or cervical carcinoma in situ ...)". A cancer
    active or dated (onset or abatement) within 5 years excludes; an excepted kind alone does not (flagged)."""
    years = p["years"]
    start = add_years(ctx.S, -years)
    found = ctx.conditions_of(p["concepts"] + p["exception_concepts"] + p.get("history_concepts", []))
    recent, excepted, history_only = [], [], []
    for c in found:
        last = max([d for d in (c.start, c.abatement) if d] or [ctx.S])
        in_window = c.active_on(ctx.S) or last >= start
        if not in_window:
            continue
        if c.ids() & set(p["exception_concepts"]):
            excepted.append(c)
        elif c.ids() & set(p["concepts"]):
            recent.append((c, last))
        else:
            history_only.append(c)
    if recent:
        c, last = max(recent, key=lambda x: x[1])
        r = met(f"{c.text or 'malignancy'} (onset {c.start}" + (f", ended {c.abatement}" if c.abatement else
                                                                ", not recorded as ended") + f"; within {years} years)",
                [x.ref for x, _ in recent])
        if c.abatement and not any(x.active_on(ctx.S) for x, _ in recent):
            r.passes_from = add_years(max(x for _, x in recent), years) + timedelta(days=1)
        return r.review("a clinician confirms the history")
    if history_only:
        c = history_only[0]
        return unknown(f"history of malignancy ({c.text or c.concepts[0].display}) recorded {c.start}: when the "
                       "cancer was is not coded", "the date and kind of the past malignancy", [c.ref]).review()
    if excepted:
        return not_met("only an excepted kind within 5 years: " + ", ".join(
            f"{c.text or c.concepts[0].display} ({c.start})" for c in excepted),
            [c.ref for c in excepted]).review("adequately treated with no recurrence is confirmed by a person")
    def recent(resource: Any) -> bool:  # an unmapped Condition counts only where a mapped one would
        c = ctx.condition_fact(resource)
        return c is not None and (c.active_on(ctx.S) or max([d for d in (c.start, c.abatement) if d] or [ctx.S])
                                  >= start)

    r = ctx.absence(["Condition"], f"malignancy within {years} years",
                    concepts=[*p["concepts"], *p.get("history_concepts", [])], among=recent)
    older = [c for c in found if c.ids() & set(p["concepts"])]
    if older and r.result == "not-met":
        r.reason = "malignancy older than 5 years: " + ", ".join(
            f"{c.text or c.concepts[0].display} (ended {c.abatement})" for c in older)
        r.evidence += [c.ref for c in older]
    return r
