"""E3: laboratory abnormalities at screening (latest result in the look-back window before S).

"white blood cell count <3.0x10⁹/L, neutrophil count <1.0x10⁹/L, lymphocyte count <0.5x10⁹/L, hemoglobin
<90 g/L, platelet count <50x10⁹/L; severe hepatic impairment (ALT or AST ≥3 times ULN, total bilirubin ≥1.5
times ULN, excluding serum ALT or AST elevation due to dermatomyositis); severe renal impairment (creatinine
clearance ≤45 mL/min)". A lab never drawn in the window is unknown, never "normal".
"""

from __future__ import annotations

from typing import Any

from fhir_adapter.studies.criteria.base import Ctx, fmt, rule
from fhir_adapter.studies.evidence import Value
from fhir_adapter.studies.result import CriterionResult, met, not_met, unknown
from fhir_adapter.terminology.qualitative import decides


def set_aside(ctx: Ctx, concepts: list[str], unusable: list[Value]) -> list[str]:
    """"Observation/x set aside: <why>" for each result of these concepts a criterion could not use: a value
    that cannot be true or has no usable unit (newer than the one used), a date that cannot be read."""
    return [v.set_aside for v in unusable] + ctx.undated(concepts, ctx.window(ctx.setting("lab_lookback_days")))


def name_set_aside(r: CriterionResult, notes: list[str]) -> CriterionResult:
    """The criterion's reason names what was set aside; a person looks when a result was decided beside them."""
    if notes:
        r.reason += "; " + "; ".join(notes)
        if r.result != "unknown":
            r.review("results set aside as impossible or unreadable: a person checks them")
    return r


def _missing(ctx: Ctx, concepts: list[str], label: str, unusable: list[Value]) -> CriterionResult:
    days = ctx.setting("lab_lookback_days")
    read_from = ctx.read_from(concepts)
    older = ctx.observations(concepts, read_from)
    notes = set_aside(ctx, concepts, unusable)
    extra = f"; latest {older[0].when}, outside the window" if older and not notes else ""
    if read_from and not older and not notes:
        extra = f"; results before {read_from} not read (--full-history reads them)"
    return name_set_aside(unknown(f"no usable {label} in the {days} days before screening{extra}",
                                  f"no {label} result in [S-{days}d, S]").setting("lab_lookback_days", days), notes)


def latest_lab(ctx: Ctx, concepts: list[str]) -> tuple[Value | None, list[Value]]:
    return ctx.latest_value(concepts, ctx.window(ctx.setting("lab_lookback_days")))


@rule("lab_threshold")
def lab_threshold(ctx: Ctx, p: dict[str, Any]) -> CriterionResult:
    """E3a-e: the exclusion applies when the latest value ``op`` threshold (in the concept's canonical unit)."""
    v, unusable = latest_lab(ctx, p["concepts"])
    label, op, t = p["label"], p["op"], p["threshold"]
    if v is None:
        return _missing(ctx, p["concepts"], label, unusable)
    shown = f"{label} {v.shown} (threshold {op} {fmt(t)} {p['unit']})"
    hit = decides(round(v.value, 9), v.comparator, op, t)  # type: ignore[arg-type]  # unit factors: float noise
    notes = set_aside(ctx, p["concepts"], unusable)
    if hit is None:
        return name_set_aside(unknown(f"{shown}: the reported bound does not decide it", f"an exact {label} value",
                                      v.refs), notes)
    r = (met if hit else not_met)(shown, v.refs)
    if v.derived:
        r.details["derived"] = v.derived
    return name_set_aside(r, notes)


def _uln(ctx: Ctx, v: Value, concept: str) -> tuple[float | None, str]:
    high = ctx.reference_high(v.fact, concept)
    if high:
        return high, "reference range of the result"
    fallback = ctx.setting("uln_fallback").get(concept)
    return fallback, "configured ULN (uln_fallback)" if fallback else "no ULN"


def _ratio(ctx: Ctx, concept: str, label: str) -> tuple[Value | None, float | None, str, list[Value]]:
    v, unusable = latest_lab(ctx, [concept])
    if v is None:
        return None, None, "", unusable
    uln, where = _uln(ctx, v, concept)
    if not uln:
        return v, None, f"{label} {v.shown}: no ULN", unusable
    ratio = round(v.value / uln, 9)  # type: ignore[operator]  # 30.75/20.5 is 1.5, not 1.4999999999
    return v, ratio, f"{label} {v.shown} = {ratio:.2f} x ULN {fmt(uln)} ({where})", unusable


@rule("liver_enzymes")
def liver_enzymes(ctx: Ctx, p: dict[str, Any]) -> CriterionResult:
    """E3f: ALT or AST ≥ 3 x ULN, "excluding ... elevation due to dermatomyositis". The ratio is machine work;
    the exception is a person's call: with CK above its ULN at the same time (muscle a likely source) the
    result is unknown, otherwise met and flagged."""
    r = _liver_enzymes(ctx, p)
    notes = [n for name in ("alt", "ast") for n in set_aside(ctx, [p[name]], latest_lab(ctx, [p[name]])[1])]
    return name_set_aside(r, [n for n in notes if n not in r.reason])


def _liver_enzymes(ctx: Ctx, p: dict[str, Any]) -> CriterionResult:
    limit = p["times_uln"]
    parts = {name: _ratio(ctx, concept, name) for name, concept in (("ALT", p["alt"]), ("AST", p["ast"]))}
    high = [(n, x) for n, x in parts.items() if x[1] is not None and x[1] >= limit]
    evidence = [x[0].fact.ref for x in parts.values() if x[0] is not None]
    if high:
        shown = "; ".join(x[2] for _, x in high)
        ck, _ = latest_lab(ctx, [p["ck"]])
        if ck is not None:
            ck_uln, _ = _uln(ctx, ck, p["ck"])
            evidence.append(ck.fact.ref)
            if ck_uln and ck.value > ck_uln:  # type: ignore[operator]
                return unknown(f"{shown} (>= {limit} x ULN) with CK {ck.shown} above ULN {fmt(ck_uln)}: the rise "
                               "may be due to dermatomyositis (protocol exception)",
                               "a clinician decides whether the ALT/AST rise is due to dermatomyositis",
                               evidence).setting("e3f_dm_exception", ctx.setting("e3f_dm_exception")).review()
            r = met(f"{shown} (>= {limit} x ULN); CK {ck.shown} not raised", evidence)
        else:
            r = met(f"{shown} (>= {limit} x ULN); no CK in the window", evidence)
        return r.setting("e3f_dm_exception", ctx.setting("e3f_dm_exception")).review(
            "the 'due to dermatomyositis' exception is a clinician's call")
    missing = [n for n, x in parts.items() if x[1] is None]
    if missing:
        n = missing[0]
        v, _, shown, unusable = parts[n]
        if v is None:
            return _missing(ctx, [p["alt" if n == "ALT" else "ast"]], n, unusable)
        return unknown(shown, f"the {n} upper limit of normal", evidence)
    return not_met("; ".join(x[2] for x in parts.values()) + f" (< {limit} x ULN)", evidence)


@rule("bilirubin")
def bilirubin(ctx: Ctx, p: dict[str, Any]) -> CriterionResult:
    """E3g: total bilirubin ≥ 1.5 x ULN (µmol/L converted to mg/dL; ULN converted the same way)."""
    v, ratio, shown, unusable = _ratio(ctx, p["concept"], "total bilirubin")
    if v is None:
        return _missing(ctx, [p["concept"]], "total bilirubin", unusable)
    if ratio is None:
        return unknown(shown, "the bilirubin upper limit of normal", [v.fact.ref])
    limit = p["times_uln"]
    return name_set_aside((met if ratio >= limit else not_met)(
        f"{shown} ({'>=' if ratio >= limit else '<'} {limit} x ULN)", [v.fact.ref]),
        set_aside(ctx, [p["concept"]], unusable))


def cockcroft_gault(age: int, weight_kg: float, creatinine_mg_dl: float, female: bool) -> float:
    """CrCl mL/min = (140 - age) x kg / (72 x creatinine mg/dL), x 0.85 for women (clinical.md §5)."""
    v = (140 - age) * weight_kg / (72 * creatinine_mg_dl)
    return v * 0.85 if female else v


@rule("creatinine_clearance")
def creatinine_clearance(ctx: Ctx, p: dict[str, Any]) -> CriterionResult:
    """E3h: creatinine clearance ≤ 45 mL/min: measured, else estimated (35591-7), else Cockcroft-Gault from
    serum creatinine, age, weight and sex (flagged as derived), else eGFR as a flagged proxy (setting)."""
    limit = p["threshold"]
    for concepts, how in ((p["measured"], "measured"), (p["estimated"], "reported estimate")):
        v, _ = latest_lab(ctx, concepts)
        if v is not None:
            hit = decides(v.value, v.comparator, "<=", limit)  # type: ignore[arg-type]
            if hit is None:
                return unknown(f"creatinine clearance {v.shown}", "an exact creatinine clearance", [v.fact.ref])
            r = (met if hit else not_met)(f"creatinine clearance ({how}) {v.shown} ({'<=' if hit else '>'} "
                                          f"{limit} mL/min)", [v.fact.ref])
            return r.review("estimated clearance") if how != "measured" else r
    creat, unusable = latest_lab(ctx, p["creatinine"])
    age, gender = ctx.age_on(ctx.S), ctx.gender
    weight, _ = ctx.latest_weight(ctx.setting("weight_lookback_days"))
    if creat is not None and creat.value and age is not None and weight is not None and gender in ("male", "female"):
        crcl = cockcroft_gault(age, weight.value, creat.value, gender == "female")  # type: ignore[arg-type]
        hit = crcl <= limit
        r = (met if hit else not_met)(
            f"Cockcroft-Gault creatinine clearance {crcl:.1f} mL/min ({'<=' if hit else '>'} {limit}) from "
            f"creatinine {creat.shown}, age {age}, weight {fmt(weight.value)} kg, {gender}",  # type: ignore[arg-type]
            [creat.fact.ref, weight.fact.ref, f"Patient/{ctx.record.patient_id}"])
        r.details["derived"] = "cockcroft-gault"
        if abs(crcl - limit) < p.get("review_margin", 5):
            r.review("derived value close to the threshold")
        return r
    if ctx.setting("e3h_egfr_proxy"):
        v, _ = latest_lab(ctx, p["egfr"])
        if v is not None:
            hit = v.value <= limit  # type: ignore[operator]
            return (met if hit else not_met)(f"eGFR {v.shown} used as a proxy for creatinine clearance",
                                             [v.fact.ref]).setting("e3h_egfr_proxy", True).review(
                "eGFR is not creatinine clearance")
    if creat is None:
        return _missing(ctx, p["measured"] + p["creatinine"], "creatinine clearance or serum creatinine", unusable)
    lacking = [w for w, ok in (("age", age is not None), ("body weight", weight is not None),
                               ("sex", gender in ("male", "female"))) if not ok]
    return unknown(f"serum creatinine {creat.shown} but no {', '.join(lacking)} for Cockcroft-Gault",
                   f"{', '.join(lacking)} to compute creatinine clearance", [creat.fact.ref])
