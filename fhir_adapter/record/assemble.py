"""Build a ``PatientRecord`` from the resources a source found for one patient.

Shared by every source, so a Bundle, an NDJSON folder and a server give the same record for the same data.
"""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

from fhir_adapter.identity import written_by_adapter
from fhir_adapter.record.patient_record import PartialRecord, PatientRecord, SetAside, Unreadable
from fhir_adapter.record.references import local_id, parse_reference, reference_of
from fhir_adapter.record.resource_types import rules
from fhir_adapter.sources.report import ReadReport


def patient_of(resource: dict[str, Any], aliases: Mapping[str, str] | None = None) -> str | None:
    """The id of the Patient a clinical resource belongs to, from its subject/patient reference.

    Returns None when the reference is missing or points at something other than a Patient.
    """
    rtype = resource.get("resourceType")
    if rtype == "Patient":
        pid = resource.get("id")
        return pid if isinstance(pid, str) else None
    for fld in rules().clinical.get(rtype, ("subject", "patient")):
        ref = reference_of(resource.get(fld))
        if ref:
            target = parse_reference(ref, aliases)
            if target and target.startswith("Patient/"):
                return target[8:]
            return None
    return None


def _last_updated(resource: dict[str, Any]) -> str:
    meta = resource.get("meta")
    return str(meta.get("lastUpdated") or "") if isinstance(meta, dict) else ""


def assemble_record(
    patient_id: str,
    resources: Iterable[tuple[dict[str, Any], object]],
    report: ReadReport,
    *,
    shared: Mapping[str, dict[str, Any]] | None = None,
    aliases: Mapping[str, str] | None = None,
    source: str = "",
    describe: Callable[[object], str] = str,
    unreadable: Iterable[Unreadable] = (),
    replaced: Collection[str] = (),
    loaded: frozenset[str] | None = None,
) -> PatientRecord | None:
    """The record of ``patient_id`` from ``(resource, where)`` pairs, or None when no Patient is among them.

    ``resources`` have passed ``sources.check.problem`` (their shape is trusted here). ``where`` names the
    resource's origin for messages ("Observation.ndjson line 12"), directly or through ``describe(where)``, which
    is called only when a message is written. Skips and set-asides are counted in ``report``: a duplicate
    ``Type/id`` keeps the copy updated last; statuses that mean "not data" are set aside; resources the adapter
    wrote are never clinical input; a patient with no Patient resource makes every resource that points at it
    dangling, and one whose Patient resource is among the ``unreadable`` (what the source holds for this patient
    but could not read) is not read at all (``report.patient_not_read``), never read without its Patient.
    ``replaced``: ids of Patients merged into this one (``record/merged.py``): their Patient resources are not
    this record's, their other resources are. ``loaded``: the record is a ``PartialRecord`` of these types only
    (``resources`` holds no other).
    """
    r = rules()
    clinical, not_data = r.clinical, r.not_data
    patient: dict[str, Any] | None = None
    record = (PatientRecord(patient_id, {}, shared=shared or {}, aliases=aliases or {}, source=source)
              if loaded is None else
              PartialRecord(patient_id, {}, shared=shared or {}, aliases=aliases or {}, source=source, loaded=loaded))
    placed: dict[tuple[str, str], tuple[dict[str, Any], object]] = {}  # (type, id) -> kept copy
    pending: list[tuple[dict[str, Any], object]] = []
    for resource, where in resources:
        rtype = resource["resourceType"]
        if rtype == "Patient":
            if replaced and resource.get("id") in replaced:
                report.note(describe(where), f"Patient/{resource.get('id')} is replaced by Patient/{patient_id} "
                            "(Patient.link): its resources are read as Patient/" + patient_id + "'s",
                            kind="Patient merged into the Patient that replaced it", quiet=True)
                continue
            if patient is not None:
                report.skip(describe(where), "duplicate Patient resource; the first one is used", local_id(resource),
                            kind="duplicate id")
            else:
                patient = resource
            continue
        rid = resource.get("id")
        if rid is not None:
            key = (rtype, rid)
            prior = placed.get(key)
            if prior is not None:
                older, newer = sorted((prior, (resource, where)), key=lambda p: _last_updated(p[0]))
                report.skip(describe(older[1]), f"duplicate id {rtype}/{rid}; the copy updated last is used",
                            f"{rtype}/{rid}", kind="duplicate id")
                if newer[0] is prior[0]:
                    continue
                _unplace(record, prior[0], report)
            placed[key] = (resource, where)
        pending.append((resource, where))
        if rtype not in clinical:
            report.skip(describe(where), f"{rtype} is not used by any criterion", local_id(resource),
                        kind=f"{rtype} not used by any criterion", quiet=True)
            continue
        meta = resource.get("meta")  # an object (the shape check): no type test here
        if meta and "tag" in meta and written_by_adapter(resource):
            report.count_set_aside(rtype, "written by fhir-adapter")
            continue
        reason = None
        for element, codes in not_data[rtype]:
            value = resource.get(element)
            if value is None:
                continue
            if type(value) is str:  # a plain status code: the common case, inlined
                if value in codes:
                    reason = f"{element} {value}"
                    break
            elif reason := _not_data(element, value, codes):
                break
        if reason:
            record.set_aside.append(SetAside(local_id(resource), reason))
            report.count_set_aside(rtype, reason)
            continue
        bucket = record.resources.get(rtype)
        if bucket is None:
            record.resources[rtype] = [resource]
        else:
            bucket.append(resource)

    record.unreadable.extend(unreadable)
    if patient is None:
        lost = next((u for u in record.unreadable if u.resource_type == "Patient"), None)
        if lost is not None:  # the patient is in the source, but not readable: no result rather than half of one
            report.patient_not_read(f"Patient/{patient_id}", lost.where, f"its Patient resource could not be read "
                                    f"({lost.reason})", kind="Patient resource unreadable")
            if pending:
                report.ignore("resource of a patient not read", len(pending))
            return None
        for resource, where in pending:
            report.skip(describe(where), f"subject Patient/{patient_id} is not in the source", local_id(resource),
                        kind="subject Patient not in the source")
        return None
    record.patient = patient
    if replaced:
        record.merged = [f"Patient/{p}" for p in sorted(replaced)]
        for p in replaced:
            report.merged_into(p, patient_id)
        record.aliases = ChainMap({f"Patient/{p}": record.reference for p in replaced}, record.aliases)  # type: ignore[arg-type]
    report.count_read("Patient")
    for rtype, kept in record.resources.items():
        report.count_read(rtype, len(kept))
    return record


def _not_data(element: str, value: Any, codes: frozenset[str]) -> str | None:
    if isinstance(value, str):
        return f"{element} {value}" if value in codes else None
    if isinstance(value, dict):
        for c in value.get("coding") or ():
            if isinstance(c, dict) and c.get("code") in codes:
                return f"{element} {c['code']}"
    return None


def _unplace(record: PatientRecord, resource: dict[str, Any], report: ReadReport) -> None:
    """Take back a resource superseded by a later duplicate (rare)."""
    kept = record.resources.get(resource.get("resourceType", ""), [])
    for i, r in enumerate(kept):
        if r is resource:
            del kept[i]
            return
    ref = local_id(resource)
    for i, s in enumerate(record.set_aside):
        if s.reference == ref:
            del record.set_aside[i]
            report.set_aside[f"{resource.get('resourceType')} {s.reason}"] -= 1
            return
