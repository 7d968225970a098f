"""Screen one patient record against a study: every criterion (and part), each with its result, a status, and
the study's information items (if any) for a person.

A criterion that raises on malformed data becomes ``unknown`` with the error as its reason (logged), so a
patient whose data is partly bad still gets results for every criterion the bad data does not touch.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import date
from typing import Any

from fhir_adapter.record.patient_record import PatientRecord
from fhir_adapter.studies.criteria import INFORMATION, RULES, Ctx
from fhir_adapter.studies.definition import CriterionDef, InformationDef, Study
from fhir_adapter.studies.result import CriterionResult, combine_any, fails, status_of, unknown
from fhir_adapter.studies.unmapped import UnmappedTally

log = logging.getLogger("fhir_adapter.studies")


def _run(ctx: Ctx, c: CriterionDef) -> CriterionResult:
    try:
        r = RULES[c.rule](ctx, c.params)  # type: ignore[index]
    except Exception as e:  # bad data must not stop the other criteria
        log.warning("%s: %s could not be evaluated: %s: %s", ctx.record.reference, c.id, type(e).__name__, e)
        r = unknown(f"could not be evaluated: {type(e).__name__}: {e}", "check this patient's data for this criterion")
        r.needs_review = True
    if c.decided_by == "person":
        r.person = True
    return r


def inform(ctx: Ctx, item: InformationDef) -> dict[str, Any]:
    """One information item: its text and seed line first, then what the rule found (an error is reported in
    the item, never raised: information never affects the screen)."""
    out: dict[str, Any] = {"text": item.text}
    try:
        out |= INFORMATION[item.rule](ctx, item.params)
    except Exception as e:
        log.warning("%s: information %s could not be computed: %s: %s", ctx.record.reference, item.id,
                    type(e).__name__, e)
        out |= {"error": f"could not be computed: {type(e).__name__}: {e}", "summary": f"{item.id}: error"}
    out["protocol"] = item.protocol
    return out


def evaluate(ctx: Ctx, study: Study) -> dict[str, tuple[CriterionDef, CriterionResult, dict[str, CriterionResult]]]:
    """Per top-level criterion: its definition, combined result and parts."""
    out = {}
    for c in study.criteria:
        if c.parts:
            parts = {p.id: _run(ctx, p) for p in c.parts}
            r = combine_any(parts, c.text)
        else:
            r = _run(ctx, c)
            parts = r.details.pop("parts", {})
        out[c.id] = (c, r, parts)
    return out


def screen(record: PatientRecord, study: Study, catalog: Any, as_of: date,
           randomization: date | None = None, horizon: Mapping[str, date] | None = None,
           tally: UnmappedTally | None = None) -> dict[str, Any]:
    """The screening result of one record as a JSON-ready dict. ``horizon``: the record was read without the
    Observations before these dates (``studies.lookback``). ``tally``: counts the records whose codes map to
    nothing and the results possible matches turned unknown, for the run's summary."""
    ctx = Ctx(record, catalog, as_of, randomization or as_of, study.settings, horizon)
    results = evaluate(ctx, study)
    try:
        deceased = ctx.deceased()
    except Exception:  # a malformed Patient must not stop the screen
        deceased = None
    status = status_of({k: (c.kind, r) for k, (c, r, _) in results.items()}, deceased=bool(deceased))
    criteria: dict[str, Any] = {}
    for cid, (c, r, parts) in results.items():
        criteria[cid] = r.to_json(c.protocol)
        if c.source:
            criteria[cid]["source"] = c.source
        part_defs = {p.id: p for p in c.parts}
        for pid, pr in parts.items():
            criteria[pid] = pr.to_json(part_defs[pid].protocol if pid in part_defs else None)
    out: dict[str, Any] = {"patient": record.reference, "study": study.id, "as_of": as_of.isoformat()}
    if randomization and randomization != as_of:
        out["randomization"] = randomization.isoformat()
    out["status"] = status
    failing = [k for k, (c, r, _) in results.items() if fails(c.kind, r.result)]
    if deceased:
        out["reason"] = deceased
    elif failing:
        out["reason"] = "fails " + ", ".join(failing)
        dates = [results[k][1].passes_from for k in failing]
        if all(dates):
            out["passes_from"] = max(d for d in dates if d).isoformat()  # type: ignore[union-attr]
    else:
        open_ = [k for k, (_, r, _) in results.items() if r.result == "unknown" and not r.person]
        out["reason"] = ("undecided for lack of data: " + ", ".join(open_)) if open_ else \
            "every criterion a machine can decide passes; a person decides the rest"
    out["review"] = [k for k, (_, r, _) in results.items() if r.needs_review or r.person]
    if record.unreadable:  # what the source holds for this patient but could not read: no conclusion rests on it
        out["unreadable"] = [u.shown() for u in record.unreadable]
    if undated := ctx.undated_results():  # results no window can place: named here whichever criterion read them
        out["set_aside"] = undated
    if study.information:  # reported for a person; computed after the status, which it never touches
        out["information"] = {item.id: inform(ctx, item) for item in study.information}
    out["criteria"] = criteria
    if tally is not None:
        tally.add_records(ctx.unmapped_keys())
        if ctx._named_unmapped:  # possible matches need an unmapped record that names something
            tally.add_result(criteria)
    return out
