"""Is every element the adapter reads of the JSON shape FHIR R4 gives it? The first one that is not, named.

The table is data (``mappings/fhir-elements.json``): per resource type, each element the adapter reads and its
datatype; per datatype, its elements. A resource that passes can be read without a type check anywhere after
(a ``coding`` is a list of objects whose ``code`` is a string...); one that fails is not read at all, rather than
read in part (a ``coding`` that is an object would otherwise map to nothing and look like an absence).

The table compiles once into nested nodes: a type (the value must be exactly of it), a tuple of types, ``[node]``
(a list of such values), ``{element: node}`` (an object; elements not listed are not read, so not checked), and
None for ``contained`` (checked as resources). ``_where`` walks them and says where a value departs; the
compiled ``_shapes.c`` (built by ``pip install``) walks them about 20 times faster and only says whether, so a
resource costs about 0.3 µs beside its 4 µs parse. Where it was not built (or with
``FHIR_ADAPTER_PURE_PYTHON=1``) ``_where`` alone decides: same answers, slower.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

import orjson

from fhir_adapter.paths import data_dir

try:
    if os.environ.get("FHIR_ADAPTER_PURE_PYTHON"):
        raise ImportError("FHIR_ADAPTER_PURE_PYTHON is set")
    from fhir_adapter.record._shapes import shape as _walk
except ImportError:  # not compiled here: the Python walk decides alone
    _walk = None

Node = Any  # type | tuple[type, ...] | list[Node] | dict[str, Node] | None

_PRIMITIVES: dict[str, Node] = {"string": str, "boolean": bool, "decimal": (int, float), "integer": (int, float)}
_KINDS = {str: "a string", bool: "a boolean", int: "a number", float: "a number", dict: "an object", list: "a list",
          type(None): "null"}


def json_kind(value: Any) -> str:
    """What a JSON value is, for messages: "a string", "a list"..."""
    return _KINDS.get(type(value), type(value).__name__)


def _compile(datatypes: dict[str, dict[str, str]], spec: str, done: dict[str, dict[str, Node]]) -> Node:
    if spec.endswith("[]"):
        return [_compile(datatypes, spec[:-2], done)]
    if spec in _PRIMITIVES:
        return _PRIMITIVES[spec]
    node = done.get(spec)
    if node is None:
        # registered before its elements compile: datatypes refer to each other (Reference -> Identifier -> ...)
        node = done[spec] = {}
        node.update({k: _compile(datatypes, v, done) for k, v in datatypes[spec].items()})
    return node


@cache
def nodes() -> dict[str, dict[str, Node]]:
    """Per resource type (and ``*`` for the others), the node of its resources."""
    raw = orjson.loads((data_dir("mappings") / "fhir-elements.json").read_bytes())
    done: dict[str, dict[str, Node]] = {}
    common = {k: _compile(raw["datatypes"], v, done) for k, v in raw["resources"]["*"].items()}
    common["contained"] = None
    table = {t: {**common, **{k: _compile(raw["datatypes"], v, done) for k, v in fields.items()}}
             for t, fields in raw["resources"].items() if t != "*"}
    table["*"] = common
    return table


def shape_problem(resource: dict[str, Any], rtype: str) -> str | None:
    """Where ``resource`` (a JSON object whose ``resourceType`` is ``rtype``) is not of the shape the adapter
    reads, as "Observation.code.coding is an object, not a list"; None when it is. Contained resources are
    checked the same way, by their own type."""
    table = nodes()
    node = table.get(rtype) or table["*"]
    if _walk is not None and _walk(resource, node, table) == 0:
        return None
    bad = _where(resource, node)
    return None if bad is None else f"{rtype}{bad}"


def _where(value: Any, node: Node) -> str | None:
    """Where below ``value`` it departs from ``node`` (".code.coding is an object, not a list"), or None."""
    if type(node) is dict:
        if type(value) is not dict:
            return f" is {json_kind(value)}, not an object"
        for key, item in value.items():
            if key in node:
                sub = node[key]
                bad = _contained(item) if sub is None else _where(item, sub)
                if bad is not None:
                    return f".{key}{bad}"
        return None
    if type(node) is list:
        if type(value) is not list:
            return f" is {json_kind(value)}, not a list"
        for i, x in enumerate(value):
            bad = _where(x, node[0])
            if bad is not None:
                return f"[{i}]{bad}"
        return None
    types = node if type(node) is tuple else (node,)
    if type(value) in types:
        return None
    return f" is {json_kind(value)}, not {json_kind(types[0]())}"


def _contained(value: Any) -> str | None:
    """Contained resources: a list of objects, each of the shape of its own type."""
    if type(value) is not list:
        return f" is {json_kind(value)}, not a list of resources"
    table = nodes()
    for i, inner in enumerate(value):
        rtype = inner.get("resourceType") if type(inner) is dict else None
        if type(rtype) is not str:
            return f"[{i}] is {'an object without resourceType' if type(inner) is dict else json_kind(inner)}, " \
                   "not a resource"
        bad = _where(inner, table.get(rtype) or table["*"])
        if bad is not None:
            return f"[{i}] ({rtype}){bad}"
    return None
