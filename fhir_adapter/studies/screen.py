"""Screen one patient record against a study: every criterion (and part), each with its result, a status, and
the study's information items (if any) for a person.

The entry cohort (the study's ``entry_cohort``) is evaluated first, as OHDSI ATLAS builds an entry cohort before
counting each inclusion rule within it: a patient for whom an entry criterion is decided ``not-met`` is
ineligible whatever the rest says, and gets a short result of the same shape (``"cohort": "out"``, only the
deciding criterion, nothing else evaluated). Every other patient gets every criterion (``"cohort": "in"``), as
does everyone with ``all_criteria``. The status is the same either way.

A criterion that raises on malformed data becomes ``unknown`` with the error as its reason (logged), so a
patient whose data is partly bad still gets results for every criterion the bad data does not touch.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import date
from typing import Any

from fhir_adapter.record.demographics import demographic_fields
from fhir_adapter.record.mrn import mrn_fields
from fhir_adapter.record.patient_record import PatientRecord
from fhir_adapter.studies.criteria import INFORMATION, RULES, Ctx
from fhir_adapter.studies.definition import CriterionDef, InformationDef, Study
from fhir_adapter.studies.result import NOT_MET, CriterionResult, combine_any, fails, status_of, unknown
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


Evaluated = tuple[CriterionDef, CriterionResult, dict[str, CriterionResult]]


def evaluate_one(ctx: Ctx, c: CriterionDef) -> Evaluated:
    """One top-level criterion: its definition, combined result and parts."""
    if c.parts:
        parts = {p.id: _run(ctx, p) for p in c.parts}
        return c, combine_any(parts, c.text), parts
    r = _run(ctx, c)
    return c, r, r.details.pop("parts", {})


def evaluate(ctx: Ctx, study: Study, done: Mapping[str, Evaluated] | None = None) -> dict[str, Evaluated]:
    """Per top-level criterion, in the study's order: its definition, combined result and parts (those in
    ``done`` already evaluated: the entry criteria)."""
    done = done or {}
    return {c.id: done[c.id] if c.id in done else evaluate_one(ctx, c) for c in study.criteria}


def _criterion_json(c: CriterionDef, r: CriterionResult, parts: Mapping[str, CriterionResult],
                    into: dict[str, Any]) -> None:
    into[c.id] = r.to_json(c.protocol)
    if c.source:
        into[c.id]["source"] = c.source
    part_defs = {p.id: p for p in c.parts}
    for pid, pr in parts.items():
        into[pid] = pr.to_json(part_defs[pid].protocol if pid in part_defs else None)


def _deceased(ctx: Ctx) -> str | None:
    try:
        return ctx.deceased()
    except Exception:  # a malformed Patient must not stop the screen
        return None


def out_of_cohort_by(result: Mapping[str, Any], study: Study) -> str | None:
    """The entry criterion that put a result out of the entry cohort (the first decided ``not-met``, short
    result or ``all_criteria``), or None for a result in it."""
    if result.get("cohort") != "out":
        return None
    criteria = result.get("criteria") or {}
    return next((cid for cid in study.entry if (criteria.get(cid) or {}).get("result") == NOT_MET), None)


def screen(record: PatientRecord, study: Study, catalog: Any, as_of: date,
           randomization: date | None = None, horizon: Mapping[str, date] | None = None,
           tally: UnmappedTally | None = None, *, all_criteria: bool = False) -> dict[str, Any]:
    """The screening result of one record as a JSON-ready dict. ``horizon``: the record was read without the
    Observations before these dates (``studies.lookback``). ``tally``: counts the records whose codes map to
    nothing and the results possible matches turned unknown, for the run's summary. ``all_criteria``: evaluate
    every criterion also for a patient out of the entry cohort (the default gives them the short result)."""
    result = _screen(record, study, catalog, as_of, randomization, horizon, tally, all_criteria, entry_only=False)
    assert result is not None
    return result


def screen_entry(record: PatientRecord, study: Study, catalog: Any, as_of: date, randomization: date | None = None,
                 horizon: Mapping[str, date] | None = None,
                 tally: UnmappedTally | None = None) -> dict[str, Any] | None:
    """The short result of a patient out of the entry cohort, as ``screen`` gives it, or None for one in it. Reads
    only what the entry criteria read (the study's ``entry_cohort.reads``), so a population screen may call it on
    a ``PartialRecord`` of those types before parsing the rest (``sources.base.Early``)."""
    return _screen(record, study, catalog, as_of, randomization, horizon, tally, False, entry_only=True)


def _screen(record: PatientRecord, study: Study, catalog: Any, as_of: date, randomization: date | None,
            horizon: Mapping[str, date] | None, tally: UnmappedTally | None, all_criteria: bool, *,
            entry_only: bool) -> dict[str, Any] | None:
    ctx = Ctx(record, catalog, as_of, randomization or as_of, study.settings, horizon)
    entry: dict[str, Evaluated] = {}
    out_by = None
    for cid in study.entry:
        entry[cid] = evaluate_one(ctx, next(c for c in study.criteria if c.id == cid))
        if entry[cid][1].result == NOT_MET:
            out_by = cid
            break
    mrn = mrn_fields(record.patient, getattr(catalog, "mrn_system", None))  # the Patient is in a partial record too
    head: dict[str, Any] = {"patient": record.reference, **mrn, **demographic_fields(record.patient, as_of),
                            "study": study.id, "as_of": as_of.isoformat()}
    if randomization and randomization != as_of:
        head["randomization"] = randomization.isoformat()
    if out_by is not None and not all_criteria:
        return _short(ctx, study, head, entry[out_by], tally)
    if entry_only:
        return None
    results = evaluate(ctx, study, entry)
    deceased = _deceased(ctx)
    status = status_of({k: (c.kind, r) for k, (c, r, _) in results.items()}, deceased=bool(deceased))
    criteria: dict[str, Any] = {}
    for c, r, parts in results.values():
        _criterion_json(c, r, parts, criteria)
    out = head
    out["status"] = status
    if study.entry:
        out["cohort"] = "out" if any(results[cid][1].result == NOT_MET for cid in study.entry) else "in"
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
    _record_notes(ctx, record, out)
    if study.information:  # reported for a person; computed after the status, which it never touches
        out["information"] = {item.id: inform(ctx, item) for item in study.information}
    out["criteria"] = criteria
    _count_unmapped(ctx, criteria, tally)
    return out


def _short(ctx: Ctx, study: Study, out: dict[str, Any], decided: Evaluated,
           tally: UnmappedTally | None) -> dict[str, Any]:
    """The result of a patient out of the entry cohort: ineligible by the entry criterion decided not-met,
    with only that criterion (and its parts). No top-level ``passes_from``: the other criteria were not
    evaluated, so no date on which the patient would pass can be given (the criterion keeps its own)."""
    c, r, parts = decided
    criteria: dict[str, Any] = {}
    _criterion_json(c, r, parts, criteria)
    out["status"] = "ineligible"
    out["cohort"] = "out"
    reason = f"out of the entry cohort by {c.id} ({c.text}): not met; no other criterion evaluated"
    if deceased := _deceased(ctx):
        reason = f"{reason}; {deceased}"
    out["reason"] = reason
    out["review"] = [c.id] if r.needs_review or r.person else []
    _record_notes(ctx, ctx.record, out, study.entry_reads or None)
    out["criteria"] = criteria
    _count_unmapped(ctx, criteria, tally, study.entry_reads or None)
    return out


def _record_notes(ctx: Ctx, record: PatientRecord, out: dict[str, Any], reads: frozenset[str] | None = None) -> None:
    """What the source holds for the patient but could not read (no conclusion rests on it), and results no window
    can place. ``reads``: only what is of these types (or of no known type): a short result names only what its
    criterion read, as a population screen that decided it before parsing the other types saw."""
    unread = record.unreadable if reads is None else [
        u for u in record.unreadable if u.resource_type is None or u.resource_type in reads]
    if unread:
        out["unreadable"] = [u.shown() for u in unread]
    if undated := ctx.undated_results():  # results no window can place: named here whichever criterion read them
        out["set_aside"] = undated


def _count_unmapped(ctx: Ctx, criteria: dict[str, Any], tally: UnmappedTally | None,
                    types: frozenset[str] | None = None) -> None:
    """The patient's unmapped records (of ``types``: a short result counts what its criterion read) and the
    results possible matches turned unknown, into the run's ``tally``."""
    if tally is not None:
        tally.add_records(ctx.unmapped_keys(types))
        if ctx._named_unmapped:  # possible matches need an unmapped record that names something
            tally.add_result(criteria)
