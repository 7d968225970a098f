"""Is a parsed JSON value a FHIR R4 resource the adapter can read? One reason when it is not.

This is the one shape check on the read path: every source calls it on every resource before anything else
reads it, so the code after it (record assembly, references, criteria) may trust the shape of every element it
reads (``record/shapes.py``: the table of those elements).
"""

from __future__ import annotations

from typing import Any

from fhir_adapter.record.resource_types import rules
from fhir_adapter.record.shapes import _walk, json_kind, nodes, shape_problem

MALFORMED = "element of the wrong JSON type"  # the kind of skip for a resource ``shape_problem`` refuses
_NODES = nodes()  # loaded once: the shape table of the types the adapter reads (and ``*`` for the others)
_READ = {t: node for t, node in _NODES.items() if t != "*"}


def problem(value: Any) -> tuple[str, str] | None:
    """``(kind, reason)`` when ``value`` is not a readable FHIR resource, else None."""
    if type(value) is not dict:
        return "not a FHIR resource", f"JSON {json_kind(value).split()[-1]} is not a FHIR resource (not an object)"
    rtype = value.get("resourceType")
    node = _READ.get(rtype) if type(rtype) is str else None  # the common case: a type the adapter reads
    if node is not None and _walk is not None and _walk(value, node, _NODES) == 0:
        return None
    if type(rtype) is not str or not rtype:
        return "not a FHIR resource", "JSON object without resourceType is not a FHIR resource"
    if rtype not in rules().r4_types:
        return "unknown resourceType", f"unknown resourceType {rtype!r} (not a FHIR R4 resource type)"
    bad = shape_problem(value, rtype)
    if bad is not None:
        if bad.startswith(f"{rtype}.id "):  # no id to name it by: not even a resource
            return "not a FHIR resource", bad
        return MALFORMED, f"{bad}: not read"
    return None
