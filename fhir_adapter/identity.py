"""The adapter's own identity in FHIR: canonical base URL and the tag on everything it writes.

Resources carrying ``ADAPTER_TAG`` were written back by the adapter (issue 6) and are never read as
clinical input (issue 2 item 6).
"""

from __future__ import annotations

from typing import Any

CANONICAL_BASE = "http://fhir-adapter.org/fhir"
TAG_SYSTEM = f"{CANONICAL_BASE}/CodeSystem/adapter-tag"
ADAPTER_TAG = {"system": TAG_SYSTEM, "code": "derived", "display": "Derived by fhir-adapter"}


def written_by_adapter(resource: dict[str, Any]) -> bool:
    """True when ``resource`` carries the adapter's tag in ``meta.tag``."""
    meta = resource.get("meta")
    if not isinstance(meta, dict):
        return False
    tags = meta.get("tag")
    return isinstance(tags, list) and any(isinstance(t, dict) and t.get("system") == TAG_SYSTEM for t in tags)
