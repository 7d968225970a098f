"""What a server says it can do: its CapabilityStatement (``GET /metadata``), reduced to what the adapter asks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fhir_adapter.errors import FhirError

# Result parameters (FHIR R4 3.1.1.5.7) are not search parameters and are never listed; every server has them.
RESULT_PARAMETERS = frozenset({
    "_count", "_offset", "_sort", "_include", "_revinclude", "_summary", "_total", "_elements", "_contained",
    "_containedType", "_format",
})


@dataclass(frozen=True)
class Capabilities:
    """``fhir_version``; ``search_params`` and ``includes`` (``searchInclude``, e.g. "MedicationStatement:medication")
    per resource type; ``operations`` (system and type level names)."""

    fhir_version: str
    search_params: dict[str, frozenset[str]] = field(default_factory=dict)
    operations: frozenset[str] = frozenset()
    software: str = ""
    includes: dict[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def from_statement(cls, statement: Any, request: str = "") -> Capabilities:
        if not isinstance(statement, dict) or statement.get("resourceType") != "CapabilityStatement":
            raise FhirError("the server's /metadata is not a CapabilityStatement", request=request)
        params: dict[str, frozenset[str]] = {}
        includes: dict[str, frozenset[str]] = {}
        operations: set[str] = set()
        for rest in statement.get("rest") or ():
            if not isinstance(rest, dict) or rest.get("mode", "server") != "server":
                continue
            operations.update(op.get("name", "") for op in rest.get("operation") or () if isinstance(op, dict))
            for res in rest.get("resource") or ():
                if isinstance(res, dict) and isinstance(res.get("type"), str):
                    names = {p.get("name") for p in res.get("searchParam") or () if isinstance(p, dict)}
                    params[res["type"]] = frozenset(n for n in names if isinstance(n, str))
                    includes[res["type"]] = frozenset(i for i in res.get("searchInclude") or ()
                                                      if isinstance(i, str))
                    operations.update(op.get("name", "") for op in res.get("operation") or ()
                                      if isinstance(op, dict))
        software = statement.get("software")
        return cls(
            fhir_version=str(statement.get("fhirVersion") or ""),
            search_params=params,
            operations=frozenset(o.lstrip("$") for o in operations if o),
            software=str(software.get("name") or "") if isinstance(software, dict) else "",
            includes=includes,
        )

    @property
    def resource_types(self) -> frozenset[str]:
        return frozenset(self.search_params)

    def supports_type(self, resource_type: str) -> bool:
        return resource_type in self.search_params

    def supports_search(self, resource_type: str, param: str) -> bool:
        """Whether ``Type?param=`` is declared. Modifiers (``code:text``) and chains are checked by their base name."""
        declared = self.search_params.get(resource_type)
        if declared is None:
            return False
        name = param.split(":", 1)[0].split(".", 1)[0]
        return name in declared or name in RESULT_PARAMETERS

    def supports_operation(self, name: str) -> bool:
        return name.lstrip("$") in self.operations

    def supports_include(self, resource_type: str, include: str) -> bool:
        """Whether ``Type?_include=include`` is declared (``searchInclude``: the include itself, or "*")."""
        declared = self.includes.get(resource_type, frozenset())
        return include in declared or "*" in declared
