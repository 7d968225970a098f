"""Prefetch templates (discovery) and the patient record a CDS Hooks request gives.

The templates ask for the Patient and, per resource type the screen reads (``mappings/resource-types.json``:
the study entry criteria's ``reads`` first), a search by patient; the medication searches ``_include`` the
Medication resources they reference.

A prefetch is never a complete record: a CDS client may page a search, cut it, or leave a key out (CDS Hooks
2.0, "Prefetch Template"). A record built from it therefore marks every resource type as not read whole
(``Unreadable`` entries, the same mark a record with an unreadable resource carries), so that every criterion
whose answer rests on an absence (``Ctx.absence`` / ``Ctx.closed_world``) is unknown rather than not met. Only a
full read of a FHIR server (``record.py``) concludes an absence.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fhir_adapter.record.assemble import assemble_record, patient_of
from fhir_adapter.record.patient_record import PatientRecord, Unreadable
from fhir_adapter.record.resource_types import rules
from fhir_adapter.sources.check import problem
from fhir_adapter.sources.report import ReadReport

PATIENT_KEY = "patient"
TOKEN = "{{context.patientId}}"
_INCLUDES = {"MedicationStatement": "MedicationStatement:medication",
             "MedicationRequest": "MedicationRequest:medication",
             "MedicationAdministration": "MedicationAdministration:medication"}
FULL_READ_LABEL = "the patient's full record on the FHIR server"
NOT_WHOLE = "may be paged or cut (not a full read)"


def prefetch_types(entry_reads: Iterable[str] = ()) -> list[str]:
    """The clinical resource types to prefetch: the entry criteria's first, then the others the record reads."""
    clinical = list(rules().clinical)
    first = [t for t in entry_reads if t in clinical]
    return list(dict.fromkeys([*first, *clinical]))


def templates(entry_reads: Iterable[str] = ()) -> dict[str, str]:
    """The discovery document's ``prefetch``: key -> FHIR query with the ``{{context.patientId}}`` token."""
    out = {PATIENT_KEY: f"Patient/{TOKEN}"}
    for rtype in prefetch_types(entry_reads):
        query = f"{rtype}?patient={TOKEN}"
        if rtype in _INCLUDES:
            query += f"&_include={_INCLUDES[rtype]}"
        out[rtype] = query
    return out


def record_from_prefetch(patient_id: str, prefetch: dict[str, Any] | None,
                         keys: Iterable[str]) -> tuple[PatientRecord | None, list[str]]:
    """The record the prefetch holds for ``patient_id`` (None without its Patient), every clinical type marked
    as not read whole; and notes for people on what the prefetch lacked (keys not sent, errors it reported)."""
    prefetch = prefetch if isinstance(prefetch, dict) else {}
    notes: list[str] = []
    resources: list[tuple[dict[str, Any], str]] = []
    unreadable: list[Unreadable] = []
    shared: dict[str, dict[str, Any]] = {}
    for key in keys:
        if key not in prefetch:
            notes.append(f"prefetch {key} was not sent")
            continue
        value = prefetch[key]
        if value is None:  # the client holds nothing for this query
            continue
        for i, resource in enumerate(_resources(value)):
            where = f"prefetch {key}" + (f" entry {i}" if _is_bundle(value) else "")
            bad = problem(resource)
            rtype = resource.get("resourceType") if isinstance(resource, dict) else None
            if rtype == "OperationOutcome":
                notes.append(f"prefetch {key}: the CDS client reported an error ({_diagnostics(resource)})")
                unreadable.append(Unreadable(key if key != PATIENT_KEY else "Patient", where,
                                             "the CDS client could not prefetch it"))
                continue
            if bad is not None:
                unreadable.append(Unreadable(rtype if isinstance(rtype, str) else None, where, bad[1]))
                continue
            if rtype in rules().shared:
                shared[f"{rtype}/{resource.get('id')}"] = resource
                continue
            if patient_of(resource) != patient_id:
                notes.append(f"{where}: not this patient's record, not read")
                continue
            resources.append((resource, where))
    unreadable.extend(Unreadable(t, f"EHR prefetch of {t}", NOT_WHOLE) for t in rules().clinical)
    record = assemble_record(patient_id, resources, ReadReport(), shared=shared, source="CDS Hooks prefetch",
                             unreadable=unreadable)
    return record, notes


def _is_bundle(value: Any) -> bool:
    return isinstance(value, dict) and value.get("resourceType") == "Bundle"


def _resources(value: Any) -> list[Any]:
    """The resources of one prefetch value: itself, or a Bundle's entries."""
    if not _is_bundle(value):
        return [value]
    entries = value.get("entry") or []
    return [e.get("resource") if isinstance(e, dict) else e for e in entries] if isinstance(entries, list) else []


def _diagnostics(outcome: dict[str, Any]) -> str:
    for issue in outcome.get("issue") or ():
        if isinstance(issue, dict):
            text = issue.get("diagnostics") or (issue.get("details") or {}).get("text") or issue.get("code")
            if text:
                return str(text)[:200]
    return "no details"
