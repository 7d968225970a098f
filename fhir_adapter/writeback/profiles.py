"""The adapter's FHIR definitions in ``profiles/`` (issue 6): CodeSystems, ResearchStudy resources, JSON Schemas
and the required bindings the server does not check. Read once, cached."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

from fhir_adapter.paths import data_dir


def profiles_dir() -> Path:
    return data_dir("profiles")


def _load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def concepts(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every concept of a CodeSystem (or under a concept), nested ones included (a split criterion's parts)."""
    for c in node.get("concept", ()):
        yield c
        yield from concepts(c)


@cache
def code_systems() -> dict[str, frozenset[str]]:
    """Every adapter CodeSystem: url -> its codes."""
    out: dict[str, frozenset[str]] = {}
    for path in sorted(profiles_dir().glob("CodeSystem-*.json")):
        cs = _load(path)
        out[cs["url"]] = frozenset(c["code"] for c in concepts(cs))
    return out


@cache
def _displays() -> dict[tuple[str, str], str]:
    out: dict[tuple[str, str], str] = {}
    for path in sorted(profiles_dir().glob("CodeSystem-*.json")):
        cs = _load(path)
        out.update({(cs["url"], c["code"]): c.get("display", c["code"]) for c in concepts(cs)})
    return out


def coding(system: str, code: str) -> dict[str, str]:
    """A Coding of an adapter CodeSystem with its display from the CodeSystem file."""
    display = _displays().get((system, code))
    return {"system": system, "code": code, **({"display": display} if display else {})}


@cache
def _studies() -> dict[str, dict[str, Any]]:
    return {(rs := _load(p))["identifier"][0]["value"]: rs for p in sorted(profiles_dir().glob("ResearchStudy-*.json"))}


def research_study(study_id: str) -> dict[str, Any]:
    """The ResearchStudy resource of ``study_id`` (a copy), KeyError when there is none."""
    return copy.deepcopy(_studies()[study_id])


@cache
def schema(name: str) -> dict[str, Any]:
    """``profiles/schemas/{name}.schema.json``."""
    return _load(profiles_dir() / "schemas" / f"{name}.schema.json")


@cache
def required_bindings() -> dict[str, frozenset[str]]:
    """``Type.element`` -> the R4 codes allowed by its required binding."""
    data = _load(profiles_dir() / "required-bindings.json")
    return {k: frozenset(v) for k, v in data.items() if "." in k and isinstance(v, list)}


@cache
def adapter_statuses() -> frozenset[str]:
    """The ResearchSubject statuses the adapter sets; any other one was set by a person."""
    return frozenset(_load(profiles_dir() / "required-bindings.json")["adapter_statuses"]["codes"])
