"""Is a parsed JSON value a FHIR R4 resource the adapter can read? One reason when it is not."""

from __future__ import annotations

from typing import Any

from fhir_adapter.record.resource_types import rules


def problem(value: Any) -> tuple[str, str] | None:
    """``(kind, reason)`` when ``value`` is not a readable FHIR resource, else None."""
    if not isinstance(value, dict):
        return "not a FHIR resource", f"JSON {type(value).__name__} is not a FHIR resource (not an object)"
    rtype = value.get("resourceType")
    if not isinstance(rtype, str) or not rtype:
        return "not a FHIR resource", "JSON object without resourceType is not a FHIR resource"
    if rtype not in rules().r4_types:
        return "unknown resourceType", f"unknown resourceType {rtype!r} (not a FHIR R4 resource type)"
    rid = value.get("id")
    if rid is not None and not isinstance(rid, str):
        return "not a FHIR resource", f"{rtype}.id is not a string"
    return None
