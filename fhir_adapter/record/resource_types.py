"""Which resource types the record gathers, how each links to its patient, and which statuses are not data.

The table is data: ``mappings/resource-types.json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import orjson

from fhir_adapter.paths import data_dir


@dataclass(frozen=True, slots=True)
class TypeRules:
    clinical: dict[str, tuple[str, ...]]  # type -> fields that reference the patient, first present wins
    not_data: dict[str, tuple[tuple[str, frozenset[str]], ...]]  # type -> ((element, codes), ...)
    shared: frozenset[str]
    r4_types: frozenset[str]


@cache
def rules() -> TypeRules:
    raw = orjson.loads((data_dir("mappings") / "resource-types.json").read_bytes())
    clinical = {t: tuple(v["patient_fields"]) for t, v in raw["clinical"].items()}
    not_data = {
        t: tuple((element, frozenset(codes)) for element, codes in v.get("not_data", {}).items())
        for t, v in raw["clinical"].items()
    }
    return TypeRules(clinical, not_data, frozenset(raw["shared"]), frozenset(raw["r4_types"]))


def _codes(value: Any) -> list[str]:
    """The codes of a status element: a plain code, or a CodeableConcept's coding codes."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [c.get("code") for c in value.get("coding") or () if isinstance(c, dict) and c.get("code")]
    return []


def not_data_reason(resource: dict[str, Any]) -> str | None:
    """Why ``resource`` is not data (e.g. "status entered-in-error"), or None when it is data."""
    for element, codes in rules().not_data.get(resource.get("resourceType", ""), ()):
        for code in _codes(resource.get(element)):
            if code in codes:
                return f"{element} {code}"
    return None
