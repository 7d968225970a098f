"""Check a resource before it is written (issue 6): the JSON Schema in ``profiles/schemas``, the FHIR R4 structure
(``fhir.resources`` R4B models, same elements as R4 for these types), the R4 required bindings the server does not
check, and every code of an adapter CodeSystem. ``check`` raises ``WriteBackError`` naming the field."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from functools import cache
from typing import Any

import jsonschema
from pydantic import ValidationError

from fhir_adapter.writeback.errors import WriteBackError
from fhir_adapter.writeback.profiles import code_systems, required_bindings, schema

SCHEMAS = {"ResearchSubject": "research-subject", "Observation": "observation", "Provenance": "provenance",
           "ResearchStudy": "research-study"}


@cache
def _validator(name: str) -> jsonschema.protocols.Validator:
    document = schema(name)
    cls = jsonschema.validators.validator_for(document)
    cls.check_schema(document)
    return cls(document)


@cache
def _model(resource_type: str) -> Any:
    module = importlib.import_module(f"fhir.resources.R4B.{resource_type.lower()}")
    return getattr(module, resource_type)


def _label(resource: dict[str, Any]) -> str:
    ident = (resource.get("identifier") or [{}])[0] if isinstance(resource.get("identifier"), list) else {}
    return f"{resource.get('resourceType', '?')}[{ident.get('value') or resource.get('id') or 'new'}]"


def check(resource: dict[str, Any]) -> None:
    """Raise ``WriteBackError`` (with ``field``) when ``resource`` is not something the adapter may write."""
    rtype = resource.get("resourceType") if isinstance(resource, dict) else None
    if rtype not in SCHEMAS:
        raise WriteBackError(f"the adapter does not write {rtype!r} resources", field="resourceType")
    label = _label(resource)
    errors = sorted(_validator(SCHEMAS[rtype]).iter_errors(resource), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        raise WriteBackError(f"{e.message} (profiles/schemas/{SCHEMAS[rtype]}.schema.json)",
                             field=_path(rtype, e.absolute_path), resource=label)
    try:
        _model(rtype).model_validate(resource)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise WriteBackError(f"{err['msg']} (FHIR R4 structure)", field=_path(rtype, err["loc"]),
                             resource=label) from None
    for element, allowed in required_bindings().items():
        owner, _, name = element.partition(".")
        if owner == rtype and name in resource and resource[name] not in allowed:
            codes = ", ".join(sorted(allowed))
            raise WriteBackError(f"{resource[name]!r} is not a code of the R4 required binding ({codes})",
                                 field=element, resource=label)
    systems = code_systems()
    for path, system, code in _codings(resource, rtype):
        if system in systems and code not in systems[system]:
            raise WriteBackError(f"code {code!r} is not in CodeSystem {system}", field=path, resource=label)


def _path(rtype: str, parts: Any) -> str:
    out = rtype
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out


def _codings(node: Any, path: str) -> Iterator[tuple[str, str, Any]]:
    """Every (path, system, code) pair in ``node``: Codings and codes with a system (Coding, Quantity)."""
    if isinstance(node, dict):
        if isinstance(node.get("system"), str) and "code" in node:
            yield path, node["system"], node["code"]
        for key, value in node.items():
            yield from _codings(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _codings(value, f"{path}[{i}]")
