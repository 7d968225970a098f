"""Drug criteria: I4 (prednisone course), I5 (stable CNI), E12 (prednisone > 2 mg/kg/day), E13 (IVIG washout),
E14.1-E14.3 (rituximab, JAK inhibitors, other biologics/immunosuppressants), E15 (prior IL-6 inhibitor)."""

from __future__ import annotations

import operator
from datetime import date, timedelta
from typing import Any

from fhir_adapter.studies.criteria.base import Ctx, fmt, rule
from fhir_adapter.studies.evidence import add_months
from fhir_adapter.studies.result import CriterionResult, met, not_met, unknown
from fhir_adapter.terminology.dosage import tables
from fhir_adapter.terminology.exposure import DRUG_TYPES, Exposure, glucocorticoid_spans

_RANK = {"MedicationAdministration": 0, "MedicationStatement": 1, "MedicationRequest": 2}


def last_use(e: Exposure, s: date) -> date | None:
    """The last day the drug was (or may have been) taken up to S."""
    if e.end is not None:
        return min(e.end, s)
    if e.ongoing:
        return s
    return e.start


def _drug(e: Exposure) -> str:
    """The drug for people, and how it was read when no code named it ("read from the product name ...")."""
    return f"{e.concept.display} ({e.basis})" if e.basis else e.concept.display


def _bases(exposures: list[Exposure], sources: list[str]) -> str:
    """"; MedicationStatement/x: read from the product name '...'" for the evidence read without a code."""
    shown = dict.fromkeys(f"{e.source}: {e.basis}" for e in exposures if e.basis and e.source in sources)
    return "".join(f"; {s}" for s in shown)


def _local_route(uses: list[tuple[date, Exposure]], start: date) -> list[tuple[date, Exposure]] | None:
    """The uses in the window by a stated non-systemic route (a cream, eye drops), newest first; None when there are
    none. A use with no route stated counts as systemic: the product's dose form usually gives one."""
    systemic = tables().systemic_routes
    local = [(d, e) for d, e in uses if d >= start and e.route is not None and e.route not in systemic]
    return local or None


def _days(n: int) -> str:
    return f"{n} day{'s' if n != 1 else ''}"


def window_start(ctx: Ctx, p: dict[str, Any]) -> tuple[date, int]:
    """The first day of "within N before screening" and N in days (6 months: 183 days or calendar months)."""
    if "months" in p:
        if ctx.setting("six_months") == "calendar":
            start = add_months(ctx.S, -p["months"])
            return start, (ctx.S - start).days
        return ctx.S - timedelta(days=p["months_as_days"]), p["months_as_days"]
    return ctx.S - timedelta(days=p["window_days"]), p["window_days"]


@rule("drug_within")
def drug_within(ctx: Ctx, p: dict[str, Any]) -> CriterionResult:
    """E13/E14.x/E15: any use of a drug class within the window before S (``window_days``, ``months``, or
    ``ever``). Met when the last use falls inside; ``passes_from`` is the first screening date it would not."""
    label = p["label"]
    found = ctx.exposures_of(classes=p["classes"])
    if p.get("route"):
        found = [e for e in found if e.route in (None, p["route"])]
    if not found:
        r = ctx.absence(DRUG_TYPES, label, classes=p["classes"])
        flagged = ctx.exposures_of(classes=p.get("flag_classes", ()))
        if flagged:
            r.review(f"{flagged[0].concept.display} on file ({flagged[0].source}): {p.get('flag_note', 'check')}")
            r.evidence.append(flagged[0].source)
        return r
    if p.get("ever"):
        e = min(found, key=lambda x: x.start or date.max)
        r = met(f"{_drug(e)} on file ({e.product or e.concept.display}, from {e.start})",
                [x.source for x in found])
        return r.review(p["review"]) if p.get("review") else r
    start, n = window_start(ctx, p)
    undated = [e for e in found if e.start is None and e.end is None]
    uses = sorted(((last_use(e, ctx.S), e) for e in found if last_use(e, ctx.S) is not None),
                  key=lambda x: x[0], reverse=True)  # type: ignore[arg-type,return-value]
    setting = ["six_months", ctx.setting("six_months")] if "months" in p else None
    if p.get("systemic") and uses and uses[0][0] >= start:
        local = _local_route(uses, start)
        if local is not None and len(local) == sum(1 for d, _ in uses if d >= start):
            last, e = local[0]
            return unknown(f"{_drug(e)} last on {last} by the {e.route} route only (within {_days(n)} before "
                           f"screening, from {start}): whether a non-systemic {label} counts is for the investigator",
                           f"investigator: does {e.route} {e.concept.display} count as {label} use?",
                           [x.source for _, x in local]).review()
        uses = [u for u in uses if local is None or u not in local]
    if uses and uses[0][0] >= start:
        last, e = uses[0]
        ongoing = e.ongoing and e.end is None
        when = "ongoing at screening" if ongoing else f"last on {last}"
        r = met(f"{_drug(e)} {when} (within {_days(n)} before screening, from {start})", [e.source])
        if not ongoing:
            r.passes_from = last + timedelta(days=n + 1)
        else:
            r.to_resolve = f"stop {e.concept.display}; passes {n + 1} days after the last dose"
        if p.get("review"):
            r.review(p["review"])
        return r.setting(*setting) if setting else r
    if undated:
        return ctx.closed_world(unknown(f"{undated[0].concept.display} on file without dates",
                                        f"when {label} was last given", [undated[0].source]),
                                DRUG_TYPES, label, classes=p["classes"])
    last, e = uses[0]
    r = not_met(f"{_drug(e)} last on {last}, before the window ({_days(n)}, from {start})", [e.source])
    if p.get("review"):
        r.review(p["review"])
    # a later use may sit in a record whose product code maps to nothing
    return ctx.closed_world(r.setting(*setting) if setting else r, DRUG_TYPES, label, classes=p["classes"])


# --- glucocorticoids ----------------------------------------------------------------------------------------


def _weight(ctx: Ctx) -> tuple[float | None, str | None, str]:
    w, _ = ctx.latest_weight(ctx.setting("weight_lookback_days"))
    if w is None:
        return None, None, "no body weight"
    return w.value, w.fact.ref, f"{fmt(w.value)} kg"  # type: ignore[arg-type]


def _gc_exposures(ctx: Ctx, classes: list[str]) -> list[Exposure]:
    return ctx.exposures_of(classes=classes)


@rule("gc_course")
def gc_course(ctx: Ctx, p: dict[str, Any]) -> CriterionResult:
    """I4: "oral prednisone (< 1 mg/kg/day, or equivalent dose of other glucocorticoids) for ≥ 4 weeks prior to
    randomization". Every day of [R-28d, R] covered by a systemic glucocorticoid; the prednisone-equivalent
    dose < 1 mg/kg/day at R and (``i4_dose_rule``) throughout. Days after S assume ongoing drugs continue.
    Coverage and dose both rest on the glucocorticoid records being all there is: a drug record whose code maps
    to nothing but whose name says glucocorticoid makes the result unknown (``closed_world``)."""
    return ctx.closed_world(_gc_course(ctx, p), DRUG_TYPES, "glucocorticoid", classes=p["classes"])


def _gc_course(ctx: Ctx, p: dict[str, Any]) -> CriterionResult:
    gcs = _gc_exposures(ctx, p["classes"])
    if not gcs:
        return ctx.absence(DRUG_TYPES, "glucocorticoid") if not ctx.holds_drugs() else not_met(
            f"no glucocorticoid among {ctx.drug_record_count()} medication records")
    kg, wref, wshown = _weight(ctx)
    if kg is None:
        return unknown("no body weight to compute mg/kg/day", "a body weight at screening", [e.source for e in gcs])
    weeks, limit = p["weeks"], p["max_mg_per_kg_day"]
    start = ctx.R - timedelta(days=7 * weeks)
    spans = glucocorticoid_spans(gcs, start, ctx.R, kg)  # the dose only where it changes, in date order
    sources = sorted({s for span in spans for s in span.dose.sources})
    evidence = [*sources, wref] if wref else sources
    gaps = [x for x in spans if x.dose.peq_mg_day <= 0 and not x.dose.uncertain and not x.dose.missing]
    undecided = [x for x in spans if x.dose.peq_mg_day <= 0 and (x.dose.uncertain or x.dose.missing)]
    if gaps:
        # the current course: the latest gap before R (its last day), the course starts the day after
        on_now = spans[-1].dose.peq_mg_day > 0
        r = not_met(f"no glucocorticoid on {gaps[-1].last} (course must cover {start}..{ctx.R}, {weeks} weeks "
                    f"before randomization)", evidence)
        if on_now:
            first = gaps[-1].last + timedelta(days=1)
            r.passes_from = first + timedelta(days=7 * weeks)
            r.reason = (f"glucocorticoid course since {first}: {(ctx.R - first).days} days before randomization "
                        f"(needs {7 * weeks})")
        return r
    if undecided:
        x = undecided[0].dose  # its first day: the first undecided day
        why = (x.missing[0][1] if x.missing else f"{x.uncertain[0]} may or may not be active")
        return unknown(f"glucocorticoid dose on {undecided[0].first} not known: {why}",
                       "the glucocorticoid dose and dates", evidence)
    at_r = spans[-1].dose
    worst_span = max(spans, key=lambda x: x.dose.mg_per_kg_day or 0)  # the first day of the highest dose
    worst_day, worst = worst_span.first, worst_span.dose
    at_r_ok = (at_r.mg_per_kg_day or 0) < limit
    throughout_ok = (worst.mg_per_kg_day or 0) < limit
    shown = f"{fmt(at_r.peq_mg_day)} mg/day prednisone-equivalent = {at_r.mg_per_kg_day:.3f} mg/kg/day at R ({wshown})"
    policy = ctx.setting("i4_dose_rule")
    non_oral = sorted({e.source for e in gcs if e.route not in (None, "oral") and e.source in sources})
    if not at_r_ok:
        return not_met(f"{shown} (must be < {limit})", evidence).setting("i4_dose_rule", policy)
    if not throughout_ok:
        high = f"{worst.mg_per_kg_day:.2f} mg/kg/day on {worst_day}"
        if policy == "at-randomization":
            r = met(f"{shown}; {high} earlier in the window", evidence)
        elif policy == "throughout":
            r = not_met(f"{high} within {start}..{ctx.R} (must stay < {limit})", evidence)
        else:
            r = unknown(f"{shown}, but {high}: the protocol does not say whether < {limit} must hold throughout",
                        "whether the dose must be < 1 mg/kg/day throughout the 4 weeks or only at randomization",
                        evidence).review()
        r.setting("i4_dose_rule", policy)
    else:
        r = met(f"{shown}; covered and < {limit} every day {start}..{ctx.R}", evidence).setting("i4_dose_rule", policy)
    if non_oral:
        r.review(f"non-oral glucocorticoid in the window ({', '.join(non_oral)})")
    r.reason += _bases(gcs, sources)
    return r


@rule("gc_high_dose")
def gc_high_dose(ctx: Ctx, p: dict[str, Any]) -> CriterionResult:
    """E12: "prednisone at a dose exceeding 2 mg/kg/day prior to screening". No window in the protocol: the
    highest daily prednisone-equivalent dose in the ``e12_window_days`` before S (default 28, covers recent
    IV pulses; 0 = the current dose at S only). Only "met" stands whatever other records hold: "not met" needs
    every glucocorticoid record read (``closed_world``)."""
    r = _gc_high_dose(ctx, p)
    return r if r.result == "met" else ctx.closed_world(r, DRUG_TYPES, "glucocorticoid", classes=p["classes"])


def _gc_high_dose(ctx: Ctx, p: dict[str, Any]) -> CriterionResult:
    days = ctx.setting("e12_window_days")
    setting = ("e12_window", f"max-dose-in-{days}d-before-screening" if days else "current-dose-at-screening")
    gcs = _gc_exposures(ctx, p["classes"])
    if not gcs:
        return ctx.absence(DRUG_TYPES, "glucocorticoid", classes=p["classes"]).setting(*setting)
    kg, wref, wshown = _weight(ctx)
    if kg is None:
        return unknown("no body weight to compute mg/kg/day", "a body weight at screening",
                       [e.source for e in gcs]).setting(*setting)
    limit = p["max_mg_per_kg_day"]
    spans = glucocorticoid_spans(gcs, ctx.S - timedelta(days=days), ctx.S, kg)[::-1]  # latest first
    operator.index(days)  # whole days only: any other window is an error, as a day-by-day walk makes it
    # the latest day of the highest dose: the last day of the latest span that has it
    worst_span = max(spans, key=lambda x: x.dose.mg_per_kg_day or 0)
    worst = worst_span.on(worst_span.last)
    evidence = list(worst.sources) + ([wref] if wref else [])
    shown = f"{fmt(worst.peq_mg_day)} mg/day prednisone-equivalent = {worst.mg_per_kg_day:.2f} mg/kg/day on " \
            f"{worst.on} ({wshown})"
    shown += _bases(gcs, list(worst.sources))
    if (worst.mg_per_kg_day or 0) > limit:
        last = max(x.last for x in spans if (x.dose.mg_per_kg_day or 0) > limit)
        r = met(f"{shown} (> {limit})", evidence).setting(*setting)
        if last < ctx.S:
            r.passes_from = last + timedelta(days=days + 1)
            r.review("the high dose was before screening, not current; the protocol gives no window")
        return r
    incomplete = [x for x in spans if not x.dose.complete]
    if incomplete:
        d = incomplete[0].on(incomplete[0].last)  # the latest incomplete day
        why = d.missing[0][1] if d.missing else f"{d.uncertain[0]} may or may not be active"
        return unknown(f"highest known dose {shown}, but the dose on {d.on} is incomplete: {why}",
                       "the glucocorticoid doses and dates", evidence).setting(*setting)
    return not_met(f"highest dose {shown} (<= {limit})", evidence).setting(*setting)


# --- calcineurin inhibitors ---------------------------------------------------------------------------------


def _daily_total(exposures: list[Exposure], day: date) -> tuple[float | None, list[str], bool]:
    """(mg/day of the CNIs active on ``day`` or None when a dose is unknown, sources, any active)."""
    by_drug: dict[str, list[Exposure]] = {}
    for e in exposures:
        if e.active_on(day):
            by_drug.setdefault(e.concept.id, []).append(e)
    total, sources = 0.0, []
    for items in by_drug.values():
        best = min(_RANK.get(e.resource_type, 9) for e in items)
        for e in items:
            if _RANK.get(e.resource_type, 9) != best:
                continue
            sources.append(e.source)
            if e.daily_mg is None:
                return None, sources, True
            total += e.daily_mg
    return total, sources, bool(by_drug)


@rule("stable_cni")
def stable_cni(ctx: Ctx, p: dict[str, Any]) -> CriterionResult:
    """I5: "a stable dose of a calcineurin inhibitor (cyclosporine or tacrolimus) for ≥4 weeks prior to
    randomization": a CNI every day of [R-28d, R] with the same daily dose (``i5_stable_dose``). Without any CNI
    the literal reading fails (``i5_without_cni``; clinical.md §7.3 calls it ambiguous: flagged). Coverage and a
    stable dose rest on the CNI records being all there is (``closed_world``)."""
    return ctx.closed_world(_stable_cni(ctx, p), DRUG_TYPES, "calcineurin inhibitor", classes=p["classes"])


def _stable_cni(ctx: Ctx, p: dict[str, Any]) -> CriterionResult:
    cnis = ctx.exposures_of(classes=p["classes"])
    if not cnis:
        r = ctx.absence(DRUG_TYPES, "calcineurin inhibitor", classes=p["classes"])
        if r.result == "not-met":
            policy = ctx.setting("i5_without_cni")
            if policy == "unknown":
                return unknown(r.reason, "whether patients without a CNI qualify (clinical.md §7.3)",
                               r.evidence).setting("i5_without_cni", policy).review()
            return r.setting("i5_without_cni", policy).review("whether patients without a CNI qualify is ambiguous")
        return r
    weeks = p["weeks"]
    start = ctx.R - timedelta(days=7 * weeks)
    totals = {}
    sources: list[str] = []
    day = start
    while day <= ctx.R:
        total, src, active = _daily_total(cnis, day)
        totals[day] = (total, active)
        sources += src
        day += timedelta(days=1)
    sources = list(dict.fromkeys(sources))
    gaps = [d for d, (_, active) in totals.items() if not active]
    if gaps:
        ended = [e for e in cnis if e.end is not None and e.end < ctx.S]
        if not totals[ctx.R][1] and ended:
            last = max(e.end for e in ended)  # type: ignore[type-var]
            return not_met(f"calcineurin inhibitor stopped on {last} (not taken at randomization)",
                           [e.source for e in ended])
        r = not_met(f"no calcineurin inhibitor on {gaps[-1]} ({weeks} weeks needed before randomization)", sources)
        r.passes_from = gaps[-1] + timedelta(days=1 + 7 * weeks)
        return r
    unknown_days = [d for d, (t, _) in totals.items() if t is None]
    if unknown_days:
        return unknown(f"calcineurin inhibitor taken every day {start}..{ctx.R} but its dose is not recorded",
                       "the calcineurin inhibitor daily dose (to confirm it is stable)", sources).setting(
            "i5_stable_dose", ctx.setting("i5_stable_dose"))
    doses = [t for t, _ in totals.values()]
    if len({round(t, 3) for t in doses}) > 1:  # type: ignore[arg-type]
        change = max(d for d in totals if d > start and totals[d][0] != totals[d - timedelta(days=1)][0])
        r = not_met(f"calcineurin inhibitor dose changed on {change} ({fmt(totals[change - timedelta(days=1)][0])}"  # type: ignore[arg-type]
                    f" -> {fmt(totals[change][0])} mg/day)", sources)  # type: ignore[arg-type]
        r.passes_from = change + timedelta(days=7 * weeks)
        return r.setting("i5_stable_dose", ctx.setting("i5_stable_dose"))
    return met(f"calcineurin inhibitor {fmt(doses[0])} mg/day every day {start}..{ctx.R}", sources).setting(  # type: ignore[arg-type]
        "i5_stable_dose", ctx.setting("i5_stable_dose"))
