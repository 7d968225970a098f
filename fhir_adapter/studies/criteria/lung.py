"""Lung criteria: I3 (ILD safety floor), E8 (RP-ILD limbs ①-④ and the P/F clause), E11 (cannot do PFT)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import date, timedelta
from typing import Any

from fhir_adapter.studies.criteria.base import Ctx, fmt, rule
from fhir_adapter.studies.evidence import Value, encounter_reasons, ref, to_date
from fhir_adapter.studies.result import CriterionResult, for_person, met, not_met, unknown

INPATIENT = frozenset({"IMP", "ACUTE", "NONAC", "EMER"})


def _codes(cc: Any) -> set[str]:
    if not isinstance(cc, Mapping):
        return set()
    return {f"{c.get('system')}|{c.get('code')}" for c in cc.get("coding") or () if isinstance(c, Mapping)}


def hrct_reports(ctx: Ctx, p: dict[str, Any]) -> list[dict[str, Any]]:
    """Chest HRCT reports up to S (DiagnosticReport coded as the HRCT concept), newest first."""
    out = [r for r in ctx.record.of("DiagnosticReport")
           if {c.id for c in ctx.catalog.classify(r.get("code"))} & set(p["hrct_concepts"])]
    return sorted(out, key=lambda r: r.get("effectiveDateTime") or r.get("issued") or "", reverse=True)


def _normal(report: dict[str, Any], p: dict[str, Any]) -> bool:
    return any(_codes(cc) & set(p["normal_codes"]) for cc in report.get("conclusionCode") or ())


def _dlco_pct(ctx: Ctx, p: dict[str, Any], start: date | None) -> tuple[Value | None, str, list[str]]:
    """DLCO % predicted: the newer of the reported value and measured / predicted x 100 of one day."""
    v, _ = ctx.latest_value(p["dlco_pct"], start)
    found = (v, f"DLCO {v.shown}", [v.fact.ref]) if v is not None else (None, "", [])
    for meas in ctx.values(p["dlco"], start):
        if meas.value is None or (v is not None and v.fact.when and meas.fact.when and meas.fact.when <= v.fact.when):
            continue
        for pred in ctx.values(p["dlco_predicted"], start):
            if pred.fact.when == meas.fact.when and pred.value:
                pct = meas.value / pred.value * 100
                return (Value(meas.fact, replace(meas.converted, value=pct, unit="%")),
                        f"DLCO {fmt(pct)}% predicted (computed {fmt(meas.value)} / {fmt(pred.value)}) on "
                        f"{meas.fact.when}", [meas.fact.ref, pred.fact.ref])
        break
    return found


@rule("ild_floor")
def ild_floor(ctx: Ctx, p: dict[str, Any]) -> CriterionResult:
    """I3: "If patients have concomitant ILD: i) SpO₂ ≥ 90% or PaO₂ ≥ 60 mmHg; ii) FVC% ≥ 60% and DLco% ≥ 40%;
    iii) HRCT lesions < 50% of lung fields". (iii) is free text: a person reads it (flagged)."""
    ild = ctx.conditions_of(p["ild_concepts"])
    reports = hrct_reports(ctx, p)
    if not ild:
        normal = [r for r in reports if _normal(r, p)]
        if normal:  # "no ILD" rests on the Conditions: one whose code maps to nothing may be ILD
            return ctx.closed_world(
                met("no ILD diagnosis and a normal chest HRCT: the ILD conditions do not apply", [ref(normal[0])]),
                ["Condition"], "ILD diagnosis", concepts=p["ild_concepts"])
        return ctx.closed_world(
            unknown("no ILD diagnosis coded and no normal HRCT on file (ILD is common in anti-MDA5 DM)",
                    "an ILD diagnosis or a normal chest HRCT"),
            ["Condition", "DiagnosticReport"], "ILD diagnosis or chest HRCT",
            concepts=[*p["ild_concepts"], *p["hrct_concepts"]])
    evidence = [ild[0].ref]
    fails, unknowns, oks = [], [], []
    ox_start = ctx.window(ctx.setting("oxygenation_lookback_days"))
    spo2, _ = ctx.latest_value(p["spo2"], ox_start)
    pao2, _ = ctx.latest_value(p["pao2"], ox_start)
    ox = [(n, v, t) for n, v, t in (("SpO2", spo2, p["spo2_min"]), ("PaO2", pao2, p["pao2_min"])) if v is not None]
    evidence += [v.fact.ref for _, v, _ in ox]
    shown = ", ".join(f"{n} {v.shown}" for n, v, _ in ox)
    if any(v.value >= t for _, v, t in ox):  # type: ignore[operator]
        oks.append(f"(i) {shown}")
    elif len(ox) == 2:
        fails.append(f"(i) {shown}: SpO2 < {p['spo2_min']}% and PaO2 < {p['pao2_min']} mmHg")
    elif ox:
        unknowns.append((f"(i) {shown}, below the floor; no {'PaO2' if ox[0][0] == 'SpO2' else 'SpO2'}",
                         "the other oxygenation measure (SpO2 or PaO2)"))
    else:
        unknowns.append(("(i) no SpO2 or PaO2 at screening", "an SpO2 or PaO2 at screening"))
    pft_start = ctx.window(ctx.setting("pft_lookback_days"))
    fvc, _ = ctx.latest_value(p["fvc_pct"], pft_start)
    dlco, dlco_text, dlco_refs = _dlco_pct(ctx, p, pft_start)
    evidence += ([fvc.fact.ref] if fvc else []) + dlco_refs
    if fvc is not None and fvc.value < p["fvc_min"]:  # type: ignore[operator]
        fails.append(f"(ii) FVC {fvc.shown} < {p['fvc_min']}%")
    if dlco is not None and dlco.value < p["dlco_min"]:  # type: ignore[operator]
        fails.append(f"(ii) {dlco_text} < {p['dlco_min']}%")
    if fvc is None or dlco is None:
        missing = " and ".join(n for n, v in (("FVC % predicted", fvc), ("DLCO % predicted", dlco)) if v is None)
        unknowns.append((f"(ii) no {missing}", f"{missing} (pulmonary function test)"))
    elif fvc.value >= p["fvc_min"] and dlco.value >= p["dlco_min"]:  # type: ignore[operator]
        oks.append(f"(ii) FVC {fvc.shown}, {dlco_text}")
    hrct = reports[0] if reports else None
    if hrct is not None:
        evidence.append(ref(hrct))
    hrct_text = f"HRCT {to_date(hrct.get('effectiveDateTime'))}: {hrct.get('conclusion')!r}" if hrct else "no HRCT"
    iii = f"(iii) extent < 50% of lung fields is read by a person ({hrct_text})"
    if fails:
        return not_met("ILD with " + "; ".join(fails), evidence)
    if unknowns:
        return unknown("ILD with " + "; ".join(u[0] for u in unknowns), "; ".join(u[1] for u in unknowns),
                       evidence).review(iii)
    return met("ILD with " + "; ".join(oks), evidence).review(iii)


# --- E8 -----------------------------------------------------------------------------------------------------


def _e8_windows(ctx: Ctx, onset: date) -> list[tuple[date, date]]:
    month = (onset, min(onset + timedelta(days=30), ctx.S))
    if ctx.setting("e8_window") == "onset-month-or-last-4-weeks":
        return [month, (ctx.S - timedelta(days=28), ctx.S)]
    return [month]


def _in(day: date | None, windows: list[tuple[date, date]]) -> bool:
    return day is not None and any(a <= day <= b for a, b in windows)


def _series(ctx: Ctx, concepts: list[str], windows: list[tuple[date, date]]) -> list[Value]:
    vals = [v for v in ctx.values(concepts, windows[0][0]) if v.value is not None and _in(v.fact.when, windows)]
    return sorted(vals, key=lambda v: (v.fact.when, v.fact.ref))


def _largest_fall(series: list[Value]) -> tuple[float, float, Value, Value] | None:
    """(absolute fall, relative fall %, earlier, later) of the largest fall from an earlier to a later value."""
    best = None
    for i, a in enumerate(series):
        for b in series[i + 1:]:
            if b.fact.when == a.fact.when:
                continue
            fall = a.value - b.value  # type: ignore[operator]
            if best is None or fall > best[0]:
                best = (fall, fall / a.value * 100 if a.value else 0.0, a, b)  # type: ignore[operator]
    return best


def _limb_admission(ctx: Ctx, p: dict[str, Any], windows: list[tuple[date, date]]) -> CriterionResult:
    """① "Acute and progressive worsening of dyspnea requiring hospitalization or supplemental oxygen"."""
    resp = set(p["respiratory_concepts"])
    hits = []
    admissions: set[str] = set()  # the admissions in the window: an unmapped reason of one may be dyspnoea
    for enc in ctx.record.of("Encounter"):
        cls = enc.get("class") or {}
        if cls.get("code") not in INPATIENT:
            continue
        period = enc.get("period") or {}
        start, end = to_date(period.get("start")), to_date(period.get("end")) or ctx.S
        if start is None or not any(start <= b and end >= a for a, b in windows):
            continue
        admissions.add(ref(enc))
        reasons = encounter_reasons(ctx.record, enc)
        if any({c.id for c in ctx.catalog.classify(r)} & resp for r in reasons):
            hits.append(ref(enc))
    oxygen = [v for v in _series(ctx, p["fio2"], windows) if v.value > 21]  # type: ignore[operator]
    oxygen += [v for v in _series(ctx, p["o2_flow"], windows) if v.value > 0]  # type: ignore[operator]
    if hits or oxygen:
        what = (["admission for dyspnoea/respiratory failure"] if hits else []) + (
            [f"supplemental oxygen ({oxygen[0].shown})"] if oxygen else [])
        return met(" and ".join(what) + " within 1 month of ILD onset", hits + [v.fact.ref for v in oxygen]).review(
            "'acute and progressive worsening' is a clinician's call")
    return ctx.absence(["Encounter"], "admission for dyspnoea or supplemental oxygen within 1 month of ILD onset",
                       concepts=p["respiratory_concepts"], among=lambda enc: ref(enc) in admissions)


def _limb_fall(ctx: Ctx, concepts: list[str], windows: list[tuple[date, date]], label: str, limit: float,
               mode: str | None) -> CriterionResult:
    """② FVC% fall > 10% (relative and/or absolute per ``e8_fvc_decline``); ④ PaO₂ fall > 10 mmHg."""
    series = _series(ctx, concepts, windows)
    if len(series) < 2:
        return unknown(f"fewer than two {label} values within 1 month of ILD onset",
                       f"two {label} measurements within 1 month of ILD onset", [v.fact.ref for v in series])
    fall, rel, a, b = _largest_fall(series)  # type: ignore[misc]
    refs = [a.fact.ref, b.fact.ref]
    shown = f"{label} {a.shown} -> {b.shown}: fall {fall:.1f}" + (f" points ({rel:.1f}% relative)" if mode else "")
    if mode is None:
        return (met if fall > limit else not_met)(f"{shown} ({'>' if fall > limit else '<='} {limit})", refs)
    absolute, relative = fall > limit, rel > limit
    if mode == "relative":
        r = (met if relative else not_met)(shown, refs)
    elif mode == "absolute":
        r = (met if absolute else not_met)(shown, refs)
    elif absolute and relative:
        r = met(f"{shown}: > {limit} on both readings", refs)
    elif absolute or relative:
        r = unknown(f"{shown}: > {limit} on the {'absolute' if absolute else 'relative'} reading only",
                    "the sponsor's reading of 'decrease in FVC% >10%' (relative or absolute)", refs).review()
    else:
        r = not_met(f"{shown}: <= {limit} on both readings", refs)
    return r.setting("e8_fvc_decline", mode)


def _pf_clause(ctx: Ctx, p: dict[str, Any]) -> CriterionResult:
    """"and PaO₂/FiO₂ ≥ 200 mmHg": reported P/F, else PaO₂ ÷ FiO₂ of the same day (room air 21% when none)."""
    policy = ctx.setting("e8_pf_clause")
    start = ctx.window(ctx.setting("oxygenation_lookback_days"))
    pf, _ = ctx.latest_value(p["pf_ratio"], start)
    if pf is not None:
        value, refs, shown = pf.value, [pf.fact.ref], f"P/F {pf.shown}"
    else:
        pao2, _ = ctx.latest_value(p["pao2"], start)
        if pao2 is None:
            return unknown("no PaO2 or P/F ratio at screening", "an arterial blood gas (PaO2 with FiO2)").setting(
                "e8_pf_clause", policy)
        fio2 = [v for v in ctx.values(p["fio2"], start) if v.fact.when == pao2.fact.when and v.value]
        frac = (fio2[0].value / 100) if fio2 else 0.21  # type: ignore[operator]
        value = pao2.value / frac  # type: ignore[operator]
        refs = [pao2.fact.ref] + ([fio2[0].fact.ref] if fio2 else [])
        shown = f"P/F {value:.0f} mmHg (PaO2 {pao2.shown} / FiO2 {frac:.2f}{'' if fio2 else ', room air assumed'})"
    limit = p["pf_min"]
    if value >= limit:  # type: ignore[operator]
        return not_met(f"{shown} (>= {limit})", refs).setting("e8_pf_clause", policy)
    if policy == "exclude-below-200":
        return met(f"{shown} (< {limit})", refs).setting("e8_pf_clause", policy).review()
    return unknown(f"{shown} (< {limit}): the clause's role is unclear (floor or part of RP-ILD)",
                   "the sponsor's reading of the P/F clause; a clinician reviews", refs).setting(
        "e8_pf_clause", policy).review()


@rule("rp_ild")
def rp_ild(ctx: Ctx, p: dict[str, Any]) -> CriterionResult:
    """E8: RP-ILD, "any one of the following four conditions within 1 month after the onset of respiratory
    symptoms: ① ... ② FVC% >10% ... ③ HRCT >20% ... ④ PaO₂ >10 mmHg; and PaO₂/FiO₂≥200 mmHg"."""
    ild = ctx.conditions_of(p["ild_concepts"])
    # the onset of respiratory symptoms: an ILD diagnosis of its own beats "DM with respiratory involvement"
    own = [c for c in ild if not c.ids() & set(p["onset_ignores"])]
    ild = sorted(own or ild, key=lambda c: c.start or date.max)
    parts: dict[str, CriterionResult] = {}
    pf = _pf_clause(ctx, p)
    if not ild:
        r = ctx.absence(["Condition"], "ILD diagnosis (RP-ILD needs ILD)", concepts=p["ild_concepts"])
        r.details["parts"] = {"E8.PF": pf}
        return r
    onset = ild[0].start
    if onset is None:
        return unknown("ILD coded without an onset date: the 1-month RP-ILD window cannot be placed",
                       "the date respiratory symptoms began", [ild[0].ref])
    windows = _e8_windows(ctx, onset)
    parts["E8.1"] = _limb_admission(ctx, p, windows)
    parts["E8.2"] = _limb_fall(ctx, p["fvc_pct"], windows, "FVC % predicted", p["fvc_fall"],
                               ctx.setting("e8_fvc_decline"))
    dl = _series(ctx, p["dlco_pct"], windows)
    if len(dl) >= 2:
        fall, rel, a, b = _largest_fall(dl)  # type: ignore[misc]
        parts["E8.2"].details["dlco"] = f"DLCO {a.shown} -> {b.shown}: fall {fall:.1f} points ({rel:.1f}% relative)"
    parts["E8.3"] = for_person("HRCT interstitial change > 20% is read from the report text by a person")
    parts["E8.4"] = _limb_fall(ctx, p["pao2"], windows, "PaO2", p["pao2_fall"], None)
    parts["E8.PF"] = pf
    span = " and ".join(f"{a}..{b}" for a, b in windows)
    limbs = {k: parts[k] for k in ("E8.1", "E8.2", "E8.4")}
    evidence = [ild[0].ref] + [e for r in parts.values() for e in r.evidence]
    hits = [k for k, r in limbs.items() if r.result == "met"]
    pf_counts = pf.result == "met" or (pf.result == "unknown" and pf.evidence)
    if hits:
        out = met("RP-ILD: " + "; ".join(f"{k} {limbs[k].reason}" for k in hits), evidence)
    elif pf.result == "met":
        out = met(f"P/F clause: {pf.reason}", evidence)
    else:
        undecided = [k for k, r in limbs.items() if r.result == "unknown" and r.evidence]
        if pf_counts:
            undecided.append("E8.PF")
        lacking = [k for k, r in limbs.items() if r.result == "unknown" and not r.evidence]
        if undecided:
            out = unknown("RP-ILD undecided: " + "; ".join(f"{k} {parts[k].reason}" for k in undecided),
                          "; ".join(str(parts[k].to_resolve) for k in undecided), evidence)
        elif lacking and ctx.setting("e8_without_series") == "unknown":
            out = unknown(f"no serial measurements within 1 month of ILD onset ({span})",
                          "; ".join(str(parts[k].to_resolve) for k in lacking), evidence)
        else:
            out = not_met(f"no RP-ILD sign within 1 month of ILD onset ({span})" +
                          (f"; not assessable: {', '.join(lacking)} (no serial values in the window)" if lacking
                           else ""), evidence)
            if lacking:
                out.setting("e8_without_series", ctx.setting("e8_without_series"))
    out.review("limb ③ (HRCT progression) is read by a person")
    for r in parts.values():
        for s in r.settings:
            out.setting(*s.split("=", 1))
    out.setting("e8_window", ctx.setting("e8_window"))
    out.details["onset"] = onset.isoformat()
    out.details["parts"] = parts
    return out


@rule("pft_unable")
def pft_unable(ctx: Ctx, p: dict[str, Any]) -> CriterionResult:
    """E11: "Patients unable to complete pulmonary function testing at baseline". A PFT procedure stopped or
    not done (reason in text) suggests it; PFT values on file say the patient could do it."""
    start = ctx.window(ctx.setting("pft_lookback_days"))
    procs = []
    for proc in ctx.record.of("Procedure"):
        if not {c.id for c in ctx.catalog.classify(proc.get("code"))} & set(p["pft_concepts"]):
            continue
        when = to_date(proc.get("performedDateTime")) or to_date((proc.get("performedPeriod") or {}).get("start"))
        if when is None or (start and when < start) or when > ctx.S:
            continue
        procs.append((when, proc))
    procs.sort(key=lambda x: x[0], reverse=True)
    values = ctx.observations(p["pft_values"], start)
    failed = [(w, x) for w, x in procs if x.get("status") in ("stopped", "not-done")]
    if failed and not (values and values[0].when and values[0].when > failed[0][0]):
        w, proc = failed[0]
        why = ((proc.get("statusReason") or {}).get("text")) or proc.get("status")
        return met(f"pulmonary function test {proc.get('status')} on {w}: {why}", [ref(proc)]).review(
            "a person confirms the patient cannot complete PFT")
    newest = max([w for w, _ in procs] + [v.when for v in values[:1] if v.when], default=None)

    def later_failure(proc: Any) -> bool:  # a PFT stopped or not done after the evidence found, coded locally
        when = to_date(proc.get("performedDateTime")) or to_date((proc.get("performedPeriod") or {}).get("start"))
        return proc.get("status") in ("stopped", "not-done") and when is not None and when <= ctx.S and (
            newest is None or when > newest)

    if values:
        return ctx.closed_world(not_met(f"PFT values on file ({values[0].concepts[0].display} on {values[0].when})",
                                        [values[0].ref] + [ref(x) for _, x in procs[:1]]),
                                ["Procedure"], "PFT not completed", concepts=p["pft_concepts"], among=later_failure)
    done = [(w, x) for w, x in procs if x.get("status") == "completed"]
    if done:
        return ctx.closed_world(not_met(f"pulmonary function test completed on {done[0][0]}", [ref(done[0][1])]),
                                ["Procedure"], "PFT not completed", concepts=p["pft_concepts"], among=later_failure)
    days = ctx.setting("pft_lookback_days")
    return ctx.closed_world(
        unknown(f"no pulmonary function test in the {days} days before screening (not done yet, or unable?)",
                "a baseline pulmonary function test (or a note that the patient cannot do one)"),
        ["Procedure"], "pulmonary function test", concepts=p["pft_concepts"],
        among=lambda proc: start is None or (
            (w := to_date(proc.get("performedDateTime")) or to_date((proc.get("performedPeriod") or {}).get("start")))
            is None or w >= start))
