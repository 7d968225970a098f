"""Build a ``PatientRecord`` from the resources a source found for one patient.

Shared by every source, so a Bundle, an NDJSON folder and a server give the same record for the same data.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from fhir_adapter.identity import written_by_adapter
from fhir_adapter.record.patient_record import PatientRecord, SetAside
from fhir_adapter.record.references import local_id, parse_reference, reference_of
from fhir_adapter.record.resource_types import not_data_reason, rules
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
            target = parse_reference(ref, dict(aliases) if aliases else None)
            if target and target.startswith("Patient/"):
                return target[8:]
            return None
    return None


def _last_updated(resource: dict[str, Any]) -> str:
    meta = resource.get("meta")
    return str(meta.get("lastUpdated") or "") if isinstance(meta, dict) else ""


def assemble_record(
    patient_id: str,
    resources: Iterable[tuple[dict[str, Any], str]],
    report: ReadReport,
    *,
    shared: Mapping[str, dict[str, Any]] | None = None,
    aliases: Mapping[str, str] | None = None,
    source: str = "",
) -> PatientRecord | None:
    """The record of ``patient_id`` from ``(resource, where)`` pairs, or None when no Patient is among them.

    ``where`` names the resource's origin for messages ("Observation.ndjson line 12"). Skips and set-asides
    are counted in ``report``: a duplicate ``Type/id`` keeps the copy updated last; statuses that mean
    "not data" are set aside; resources the adapter wrote are never clinical input; a patient with no
    Patient resource makes every resource that points at it dangling.
    """
    clinical = rules().clinical
    patient: dict[str, Any] | None = None
    by_id: dict[str, tuple[dict[str, Any], str]] = {}
    kept: list[tuple[dict[str, Any], str]] = []
    for resource, where in resources:
        rtype = resource.get("resourceType")
        if rtype == "Patient":
            if patient is not None:
                report.skip(where, "duplicate Patient resource; the first one is used", local_id(resource),
                            kind="duplicate id")
                continue
            patient = resource
            continue
        key = local_id(resource)
        prior = by_id.get(key) if "id" in resource else None
        if prior is not None:
            older, newer = sorted((prior, (resource, where)), key=lambda p: _last_updated(p[0]))
            report.skip(older[1], f"duplicate id {key}; the copy updated last is used", key, kind="duplicate id")
            by_id[key] = newer
            continue
        if "id" in resource:
            by_id[key] = (resource, where)
        kept.append((resource, where))

    if patient is None:
        for resource, where in kept:
            report.skip(where, f"subject Patient/{patient_id} is not in the source", local_id(resource),
                        kind="subject Patient not in the source")
        return None

    record = PatientRecord(patient_id, patient, shared=shared or {}, aliases=aliases or {}, source=source)
    report.count_read("Patient")
    for resource, where in kept:
        key = local_id(resource)
        if "id" in resource and by_id.get(key, (None,))[0] is not resource:
            continue  # superseded duplicate
        rtype = resource["resourceType"]
        if rtype not in clinical:
            report.skip(where, f"{rtype} is not used by any criterion", key, kind=f"{rtype} not used by any criterion",
                        quiet=True)
            continue
        if written_by_adapter(resource):
            report.count_set_aside(rtype, "written by fhir-adapter")
            continue
        reason = not_data_reason(resource)
        if reason:
            record.set_aside.append(SetAside(key, reason))
            report.count_set_aside(rtype, reason)
            continue
        record.resources.setdefault(rtype, []).append(resource)
        report.count_read(rtype)
    return record
