"""I2 (anti-MDA5 DM per the 2023 Chinese consensus) and E1 (polymyositis, antisynthetase, IMNM, overlap)."""

from __future__ import annotations

from typing import Any

from fhir_adapter.studies.criteria.base import Ctx, rule
from fhir_adapter.studies.result import CriterionResult, met, not_met, unknown
from fhir_adapter.terminology.qualitative import Verdict


def antibody_status(ctx: Ctx, concepts: list[str]) -> tuple[str | None, list[str], str]:
    """("positive" / "negative" / "indeterminate" / None, evidence, description) over every result ≤ S.

    Any positive counts as positive (a later negative is reported for review); only negatives: negative. The
    description says how a quantity was read ("85 U/mL above the lab's cut-off 32 (referenceRange.high)"); a
    result that cannot be read says why, and results whose date cannot be read are named.
    """
    status, refs, text, _ = read_status([(f, ctx.reading(f)) for f in ctx.observations(concepts)],
                                        ctx.undated(concepts))
    return status, refs, text


def read_status(reads: list[tuple[Any, Verdict]],
                undated: list[str]) -> tuple[str | None, list[str], str, str | None]:
    """The status of a list of (result, its reading), newest first: (status, evidence, description, what would
    resolve an unread one). A result is an ObsFact or a list of them (one draw of a multi-number test)."""
    def refs_of(x: Any) -> list[str]:
        return [f.ref for f in x] if isinstance(x, list) else [x.ref]

    def when_of(x: Any) -> Any:
        return max(f.when for f in x) if isinstance(x, list) else x.when

    def said(x: Any, v: Verdict) -> str:
        return f"{v.verdict} on {when_of(x)}" + (f" ({v.how})" if v.how else "")

    note = f"; {'; '.join(undated)}" if undated else ""
    pos = [(f, v) for f, v in reads if v.verdict == "positive"]
    neg = [(f, v) for f, v in reads if v.verdict == "negative"]
    if pos:
        (pf, pv), later = pos[0], ""
        if neg and when_of(neg[0][0]) and when_of(pf) and when_of(neg[0][0]) > when_of(pf):
            later = f"; a later negative on {when_of(neg[0][0])}"
        return "positive", refs_of(pf) + (refs_of(neg[0][0]) if later else []), said(pf, pv) + later + note, None
    if neg and not undated:
        return "negative", refs_of(neg[0][0]), said(*neg[0]), None
    if reads or undated:
        f, v = reads[0] if reads else (None, Verdict(None))
        if f is None:
            return "indeterminate", [], f"no readable result{note}", "a result with a readable date"
        if neg:  # negative, but a result that no window can place may be newer
            return "indeterminate", refs_of(neg[0][0]), said(*neg[0]) + note, "the result's date"
        what = f"result on {when_of(f)} " + (v.how if v.how and v.verdict is None else
                                             f"{v.verdict or 'neither positive nor negative'}"
                                             + (f" ({v.how})" if v.how else ""))
        return "indeterminate", refs_of(f), what + note, v.needs
    return None, [], "no result", None


@rule("anti_mda5_dm")
def anti_mda5_dm(ctx: Ctx, p: dict[str, Any]) -> CriterionResult:
    """I2: "Dermatomyositis ... with Gottron's papules, Gottron's rash, or erythema ab igne, along with positive
    serum anti-MDA5 antibodies". Decided on the coded DM diagnosis and the antibody; the skin sign is usually
    free text, so unless it is coded the result is flagged for review. Without ``skin_sign_class`` in the params
    (NCT04966884 T1: "anti-MDA5+ DM patients", no skin sign named) no skin sign is looked for."""
    dm = ctx.conditions_of(p["dm_concepts"])
    juvenile = ctx.conditions_of(p.get("juvenile_concepts", ()))
    status, ab_refs, ab_text = antibody_status(ctx, p["antibody_concepts"])
    if not dm and not juvenile:
        wanted = [*p["dm_concepts"], *p.get("juvenile_concepts", ())]
        if status == "positive":
            r = ctx.absence(["Condition"], "dermatomyositis diagnosis", concepts=wanted)
            if r.result == "not-met":
                r.reason += f"; anti-MDA5 {ab_text}"
                r.evidence += ab_refs
                return r.review("anti-MDA5 positive without a coded dermatomyositis diagnosis")
            return r
        return ctx.absence(["Condition"], "dermatomyositis diagnosis", concepts=wanted)
    dm_refs = [c.ref for c in dm or juvenile]
    if status == "negative":
        return not_met(f"anti-MDA5 {ab_text}", ab_refs + dm_refs)
    if status is None:
        return unknown("dermatomyositis coded but no anti-MDA5 result on file", "no anti-MDA5 antibody result on file",
                       dm_refs)
    if status == "indeterminate":
        _, _, _, needs = read_status([(f, ctx.reading(f)) for f in ctx.observations(p["antibody_concepts"])],
                                     ctx.undated(p["antibody_concepts"]))
        return unknown(f"anti-MDA5 {ab_text}", f"{needs} (anti-MDA5)" if needs else
                       "repeat or read the anti-MDA5 result", dm_refs + ab_refs).review()
    wants_sign = "skin_sign_class" in p
    signs = ctx.conditions_of(classes=[p["skin_sign_class"]]) if wants_sign else []
    texts = [c for c in ctx.conditions if any(t in c.text.lower() for t in p.get("skin_sign_texts", ()))]
    r = met(f"dermatomyositis ({(dm or juvenile)[0].text or 'coded'}) and anti-MDA5 {ab_text}",
            dm_refs + ab_refs + [c.ref for c in signs or texts])
    if wants_sign and not signs:
        found = f"skin sign in text only ({texts[0].text!r})" if texts else "no coded skin sign"
        r.review(f"{found}: a person confirms Gottron's papules/sign or heliotrope rash")
    if juvenile and not dm:
        r.review("coded as juvenile dermatomyositis")
    return r


@rule("excluded_myositis")
def excluded_myositis(ctx: Ctx, p: dict[str, Any]) -> CriterionResult:
    """E1: "Polymyositis, anti-synthetase syndrome, immune-mediated necrotizing myositis, or overlap myositis
    with other connective tissue diseases". A coded diagnosis excludes (codes are not specific: review);
    a positive antisynthetase/SRP antibody or a co-existing CTD is flagged, never excluded on its own."""
    found = ctx.conditions_of(classes=p["condition_classes"])
    flags = []
    evidence = []
    for f, v in ctx.results([c.id for cls in p["antibody_classes"] for c in ctx.catalog.members(cls)]):
        if v == "positive":
            flags.append(f"positive {f.concepts[0].display} on {f.when}")
            evidence.append(f.ref)
    ctd = ctx.conditions_of(classes=p["ctd_classes"])
    if ctd:
        flags.append("co-existing " + ", ".join(sorted({c.concepts[0].display for c in ctd})) + " (overlap?)")
        evidence += [c.ref for c in ctd]
    if found:
        names = ", ".join(sorted({c.text or c.concepts[0].display for c in found}))
        r = met(f"coded {names}", [c.ref for c in found] + evidence)
        return r.review("diagnosis codes are not specific" + (f"; {'; '.join(flags)}" if flags else ""))
    r = ctx.absence(["Condition"], "polymyositis, antisynthetase, IMNM or overlap diagnosis",
                    classes=p["condition_classes"])
    r.evidence += evidence
    if flags:
        r.review("; ".join(flags))
    return r
