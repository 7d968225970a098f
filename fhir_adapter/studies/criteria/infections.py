"""Infection criteria: E4 (severe infection admission, IV antibiotics), E5a/E5b (TB), E6 (hepatitis), E7 (HIV)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from fhir_adapter.studies.criteria.base import Ctx, rule
from fhir_adapter.studies.criteria.diagnosis import read_status
from fhir_adapter.studies.criteria.labs import latest_lab
from fhir_adapter.studies.evidence import drug_routes, encounter_reasons, ref, to_date
from fhir_adapter.studies.result import CriterionResult, met, not_met, unknown
from fhir_adapter.terminology.exposure import DRUG_TYPES
from fhir_adapter.terminology.qualitative import Verdict, component_rule, decides, read_result

INPATIENT = frozenset({"IMP", "ACUTE", "NONAC"})


def _atc_codes(ctx: Ctx, source: str) -> set[str]:
    res = ctx.record.get(source) or {}
    cc = res.get("medicationCodeableConcept")
    if not isinstance(cc, Mapping) and res.get("medicationReference"):
        cc = (ctx.record.resolve(res["medicationReference"], within=res) or {}).get("code")
    return {str(c.get("code")) for c in (cc or {}).get("coding") or ()
            if isinstance(c, Mapping) and c.get("system") == "http://www.whocc.no/atc"}


@rule("infection")
def infection(ctx: Ctx, p: dict[str, Any]) -> CriterionResult:
    """E4: "hospitalized for severe infection within 60 days prior to screening, or who received intravenous
    antibiotics (... five-half-life washout ...), but may receive empirical oral or topical antibiotics"."""
    start = ctx.S - timedelta(days=p["admission_days"])
    infections = set(p["infection_classes"])
    admissions = []
    in_window: set[str] = set()  # admissions in the window: an unmapped reason of one may be an infection
    for enc in ctx.record.of("Encounter"):
        if (enc.get("class") or {}).get("code") not in INPATIENT:
            continue
        period = enc.get("period") or {}
        a, b = to_date(period.get("start")), to_date(period.get("end")) or ctx.S
        if a is None or a > ctx.S or b < start:
            continue
        in_window.add(ref(enc))
        reasons = encounter_reasons(ctx.record, enc)
        if any({cls for c in ctx.catalog.classify(r) for cls in c.classes} & infections for r in reasons):
            admissions.append((a, b, enc))
    if admissions:
        a, b, enc = max(admissions, key=lambda x: x[1])
        r = met(f"admitted {a}..{b} for infection (within {p['admission_days']} days before screening)", [ref(enc)])
        r.passes_from = b + timedelta(days=p["admission_days"] + 1)
        return r.review("'severe' infection is a clinician's call")
    half_lives = ctx.setting("antibiotic_half_life_hours")
    iv = [e for e in ctx.exposures_of(classes=p["antibiotic_classes"]) if e.route == "intravenous"]
    pending, undecided, done = [], [], []
    for e in iv:
        last = e.end or (ctx.S if e.ongoing else e.start)
        if last is None:
            undecided.append((e, "no dates"))
            continue
        hours = next((half_lives[c] for c in _atc_codes(ctx, e.source) if c in half_lives), None)
        if hours is None:
            undecided.append((e, f"no half-life configured for {e.product or e.concept.display}"))
            continue
        clear = last + timedelta(days=math.ceil(5 * hours / 24))
        (pending if clear > ctx.S else done).append((e, last, clear, hours))
    if pending:
        e, last, clear, hours = max(pending, key=lambda x: x[2])
        r = met(f"IV {e.product or e.concept.display} until {last}: 5 half-lives ({5 * hours:g} h) end {clear}",
                [e.source])
        r.passes_from = clear + timedelta(days=1) if clear >= ctx.S else clear
        return r.review("absence of active infection must be confirmed before enrollment")
    if undecided:
        e, why = undecided[0]
        return unknown(f"IV antibiotic {e.product or e.concept.display}: {why}",
                       "the antibiotic's half-life and last dose (5 half-lives washout)", [e.source])
    enc_part = ctx.absence(["Encounter"], "infection admission in the last 60 days", classes=p["infection_classes"],
                           among=lambda enc: ref(enc) in in_window)
    def given_iv(res: Any) -> bool:  # as for a mapped antibiotic: only a stated intravenous route counts
        return "intravenous" in drug_routes(res)

    drug_part = ctx.absence(DRUG_TYPES, "IV antibiotic", classes=p["antibiotic_classes"], among=given_iv) \
        if not done else ctx.closed_world(not_met("IV antibiotics washed out: " + ", ".join(
            f"{e.product} until {last}" for e, last, _, _ in done), [e.source for e, *_ in done]),
            DRUG_TYPES, "IV antibiotic", classes=p["antibiotic_classes"], among=given_iv)
    if enc_part.result == "unknown" or drug_part.result == "unknown":
        bad = enc_part if enc_part.result == "unknown" else drug_part
        out = unknown(bad.reason, bad.to_resolve, bad.evidence)
        out.details = bad.details
        return out
    return not_met(f"{enc_part.reason}; {drug_part.reason}", drug_part.evidence).setting(
        "absent_records", ctx.setting("absent_records"))


@rule("active_tb")
def active_tb(ctx: Ctx, p: dict[str, Any]) -> CriterionResult:
    """E5a: "Active tuberculosis infection that is untreated or inadequately treated"."""
    tb = [c for c in ctx.conditions_of(p["tb_concepts"]) if c.active_on(ctx.S) and not c.date_problems()]
    undated = [c for c in ctx.conditions_of(p["tb_concepts"]) if c.date_problems()]
    if not tb and undated:
        c = undated[0]
        return unknown(f"TB on file ({c.text or 'coded'}) but {c.ref} set aside: {'; '.join(c.date_problems())}: "
                       "whether it is active cannot be read", f"the dates of {c.ref}", [c.ref]).review()
    if tb:
        treated = [e for e in ctx.exposures_of(classes=p["treatment_classes"]) if e.active_on(ctx.S)]
        if treated:
            return unknown(f"active TB ({tb[0].text}) under treatment ({treated[0].concept.display})",
                           "whether the TB treatment is adequate", [tb[0].ref, treated[0].source]).review()
        return met(f"active TB ({tb[0].text or 'coded'}) from {tb[0].start}, no anti-TB treatment", [tb[0].ref])
    old = ctx.conditions_of(p["tb_concepts"])
    r = ctx.absence(["Condition"], "active tuberculosis", concepts=p["tb_concepts"],
                    among=lambda res: (c := ctx.condition_fact(res)) is not None and c.active_on(ctx.S))
    if old:
        r.evidence.append(old[0].ref)
        r.review(f"past TB on file ({old[0].text}, {old[0].clinical})")
    return r


@rule("latent_tb")
def latent_tb(ctx: Ctx, p: dict[str, Any]) -> CriterionResult:
    """E5b: LTBI (positive IGRA: QFT-GIT, QFT-G, T-SPOT) without ≥ 2 weeks of preventive therapy with ≥ 2
    anti-TB drugs before randomization (and continuing)."""
    status, refs, text, needs = _igra_status(ctx, p)
    ltbi = ctx.conditions_of(p["ltbi_concepts"])
    if status != "positive" and not ltbi:
        if status == "negative":
            return not_met(f"IGRA {text}", refs)
        if status == "indeterminate":
            return unknown(f"IGRA {text}", needs or "a repeat IGRA", refs).review()
        return unknown("no IGRA result on file", "no IGRA result on file (QuantiFERON or T-SPOT.TB)")
    evidence = refs + [c.ref for c in ltbi]
    why = f"IGRA {text}" if status == "positive" else f"latent TB coded ({ltbi[0].text})"
    weeks = p["weeks"]
    start = ctx.R - timedelta(days=7 * weeks)
    drugs: dict[str, list[Any]] = {}
    for e in ctx.exposures_of(classes=p["treatment_classes"]):
        drugs.setdefault(e.concept.id, []).append(e)
    covering = {k: v for k, v in drugs.items()
                if all(any(e.active_on(start + timedelta(days=i)) for e in v) for i in range(7 * weeks + 1))}
    evidence += [e.source for v in drugs.values() for e in v]
    if len(covering) >= p["min_drugs"]:
        return not_met(f"{why}; preventive therapy with {', '.join(sorted(covering))} covering {start}..{ctx.R}",
                       evidence).review("therapy must continue through the study")
    current = {k: v for k, v in drugs.items() if any(e.active_on(ctx.S) for e in v)}
    r = met(f"{why}; {len(current)} anti-TB drug(s) now ({', '.join(sorted(current)) or 'none'}), "
            f"{p['min_drugs']} needed for {weeks} weeks before randomization", evidence)
    if len(current) >= p["min_drugs"]:
        since = max(min(e.start for e in v if e.start) for v in current.values())
        r.passes_from = since + timedelta(days=7 * weeks)
    else:
        r.to_resolve = f"start preventive therapy with >= {p['min_drugs']} anti-TB drugs for {weeks} weeks"
    # "too few anti-TB drugs" rests on the drug records: one whose code maps to nothing may be another
    return ctx.closed_world(r, DRUG_TYPES, "anti-TB drug", classes=p["treatment_classes"])


def _igra_status(ctx: Ctx, p: dict[str, Any]) -> tuple[str | None, list[str], str, str | None]:
    """The IGRA status from the lab's interpretation (the ``igra_class`` results) or from all the components of
    one draw by the manufacturer's rule (``component_rules``); a component alone is never read."""
    concepts = [c.id for c in ctx.catalog.members(p["igra_class"])]
    reads: list[tuple[Any, Verdict]] = []
    loose: dict[str, Any] = {}
    for f in ctx.observations(concepts):
        result = read_result(f.resource)
        if result.kind == "quantity":  # one number: only the lab's explicit POS/NEG/IND interpretation reads it
            if result.interpretation in ("positive", "negative", "indeterminate"):
                reads.append((f, Verdict(result.interpretation, "read from the lab's interpretation")))
            else:
                loose[f.ref] = f
            continue
        r = ctx.reading(f)
        if r.verdict is not None or not f.resource.get("component"):  # a panel of components is read below
            reads.append((f, r))
    undated = ctx.undated(concepts)
    for rule_id in p.get("component_rules", ()):
        rule = component_rule(rule_id)
        draws, alone = ctx.component_reads(rule)
        reads += draws
        for f in alone:
            loose.setdefault(f.ref, f)
        undated += [u for u in ctx.undated(rule.concept_ids()) if u not in undated]
    reads.sort(key=lambda x: max((f.when, f.ref) for f in x[0]) if isinstance(x[0], list) else (x[0].when, x[0].ref),
               reverse=True)
    status, refs, text, needs = read_status(reads, undated)
    if loose and status != "positive":
        shown = ", ".join(f"{f.ref} ({f.concepts[0].display}, {f.when})" for f in list(loose.values())[:4])
        note = (f"IGRA component(s) not read alone: {shown}: the lab's interpretation or Nil, TB antigen and "
                "Mitogen of one draw are needed")
        if status is None:
            return "indeterminate", list(loose), note, "the lab's IGRA interpretation, or every component of one draw"
        text += f"; {note}"
    return status, refs, text, needs


@rule("viral_hepatitis")
def viral_hepatitis(ctx: Ctx, p: dict[str, Any]) -> CriterionResult:
    """E6: "HBsAg-positive, HBeAg-positive, or HBV-DNA >10³ copies/L (HBV-DNA testing required if
    HBcAb-positive); HCVAb-positive". The copies/L is almost certainly copies/mL (setting ``e6_hbv_dna``)."""
    start = ctx.window(ctx.setting("serology_lookback_days"))
    seen: dict[str, tuple[str | None, list[str], str]] = {}
    undated: list[str] = []
    for key, concepts in p["markers"].items():
        results = ctx.observations(concepts, start)
        undated += ctx.undated(concepts, start)
        if results:
            f, r = results[0], ctx.reading(results[0])
            how = f" ({r.how})" if r.how else ""
            seen[key] = (r.verdict or "unreadable", [f.ref], f"{key} {r.verdict or 'unreadable'} on {f.when}{how}")
        else:
            seen[key] = (None, [], f"no {key}")
    evidence = [r for v in seen.values() for r in v[1]]
    positive = [v[2] for k, v in seen.items() if v[0] == "positive" and k != "anti-HBc"]
    if positive:
        return met("; ".join(positive), evidence)
    if undated:  # a result no window can place may be the positive one
        return unknown("; ".join([v[2] for v in seen.values() if v[0]] + undated),
                       "the dates of the results set aside", evidence).review()
    dna_setting = ctx.setting("e6_hbv_dna")
    limit, per_iu = dna_setting["copies_per_mL"], dna_setting["copies_per_IU"]
    dna_note = None
    if seen["anti-HBc"][0] == "positive":
        dna, _ = latest_lab(ctx, p["hbv_dna_copies"])
        factor = 1.0
        if dna is None:
            dna, _ = latest_lab(ctx, p["hbv_dna_iu"])
            factor = per_iu
        if dna is None:
            return unknown("anti-HBc positive and no HBV DNA result (DNA testing required)",
                           "an HBV DNA result (required when anti-HBc is positive)", evidence)
        evidence.append(dna.fact.ref)
        value = dna.value * factor  # type: ignore[operator]
        shown = f"HBV DNA {dna.shown}" + (f" = {value:g} copies/mL at {per_iu} copies/IU" if factor != 1 else "")
        hit = decides(value, dna.comparator, ">", limit)
        r = (unknown(f"anti-HBc positive, {shown}: does not decide > {limit} copies/mL", "an exact HBV DNA value",
                     evidence) if hit is None else (met if hit else not_met)(
            f"anti-HBc positive, {shown} ({'>' if hit else '<='} {limit} copies/mL)", evidence))
        r.setting("e6_hbv_dna", f"{limit}-copies/mL")
        if factor != 1:
            r.review("IU/mL converted to copies/mL with an assay-dependent factor")
        if r.result != "not-met":
            return r
        dna_note = r
    missing = [k for k in p["required"] if seen[k][0] is None]
    unreadable = [k for k in p["required"] if seen[k][0] in ("indeterminate", "unreadable")]
    if missing or unreadable:
        days = ctx.setting("serology_lookback_days")
        said = [f"no {', '.join(missing)} result in the {days} days before screening"] if missing else []
        said += [seen[k][2] for k in unreadable]
        r = unknown("; ".join(said), f"{', '.join(missing + unreadable)} at screening", evidence)
        return r.review() if unreadable else r
    out = not_met("; ".join(v[2] for k, v in seen.items() if v[0]), evidence)
    if dna_note is not None:
        out.reason += f"; {dna_note.reason}"
        out.settings += dna_note.settings
        out.needs_review = dna_note.needs_review
    return out.setting("e6_hbv_dna", f"{limit}-copies/mL")


@rule("hiv")
def hiv(ctx: Ctx, p: dict[str, Any]) -> CriterionResult:
    """E7: "Documented HIV infection, evidenced by positive serological test results or positive HIV
    serological test results at screening"."""
    coded = ctx.conditions_of(p["condition_concepts"])
    start = ctx.window(ctx.setting("serology_lookback_days"))
    results = ctx.observations(p["serology_concepts"], start)
    undated = ctx.undated(p["serology_concepts"], start)
    if coded:
        return met(f"HIV infection on file ({coded[0].text or 'coded'}, {coded[0].start})",
                   [coded[0].ref] + [f.ref for f in results[:1]])
    note = f"; {'; '.join(undated)}" if undated else ""
    if results:
        f, r = results[0], ctx.reading(results[0])
        how = f" ({r.how})" if r.how else ""
        if r.verdict == "positive":
            return met(f"HIV test reactive on {f.when}{how}", [f.ref]).review("confirm a reactive screening test")
        if r.verdict == "negative" and not undated:  # an HIV diagnosis coded locally would override the test
            return ctx.closed_world(not_met(f"HIV test negative on {f.when}{how}", [f.ref]), ["Condition"],
                                    "HIV infection", concepts=p["condition_concepts"])
        said = f"HIV test on {f.when} " + (r.how if r.verdict is None and r.how else
                                          f"{r.verdict or 'neither reactive nor negative'}{how}")
        return unknown(said + note, r.needs or "a readable HIV test", [f.ref]).review()
    days = ctx.setting("serology_lookback_days")
    return unknown(f"no HIV test in the {days} days before screening{note}", "an HIV antigen/antibody test at "
                   "screening" + (" (or the dates of the results set aside)" if undated else ""))
