"""FHIR references: parse the forms a source may use into ``Type/id``.

Forms (FHIR R4 3.2.0.1 "Resource references"): relative ``Patient/123`` (with or without
``/_history/2``), absolute ``http://server/fhir/Patient/123``, ``urn:uuid:...`` (bundles, resolved through
the bundle's fullUrls) and ``#id`` (a contained resource).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# [base/]Type/id[/_history/vid]; a type starts with a capital letter, an id is [A-Za-z0-9\-\.]{1,64}
_LITERAL = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?/?$")


def parse_reference(reference: str, aliases: Mapping[str, str] | None = None) -> str | None:
    """``Type/id`` for a literal reference, or None when it names no resource (``#id``, unknown urn)."""
    if not reference or reference.startswith("#"):
        return None
    if aliases and reference in aliases:
        return aliases[reference]
    if reference.startswith("urn:"):
        return None
    m = _LITERAL.search(reference)
    return f"{m.group(1)}/{m.group(2)}" if m else None


def reference_of(value: Any) -> str | None:
    """The ``reference`` string of a Reference element, or None."""
    if isinstance(value, dict):
        ref = value.get("reference")
        return ref if isinstance(ref, str) else None
    return None


def local_id(resource: dict[str, Any]) -> str:
    """``Type/id`` of a resource (``Type/?`` when it has no id)."""
    return f"{resource.get('resourceType', '?')}/{resource.get('id', '?')}"
