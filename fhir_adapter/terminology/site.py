"""Site mappings: a hospital's local codes, code-system aliases, unit strings, names and reviewed codes, as a
JSON file.

The file (format: ``mappings/schemas/site.schema.json``; worked example ``fhir_adapter/sample/site-mappings.json``;
README "Site mappings") is validated on load; every error names the file and the entry. Its codes join the
catalog with status ``SITE``; its ``names`` join the name index; its ``ignore`` entries are codes it reviewed as
irrelevant (never counted as unmapped, never a possible match). This module returns plain data checked against
the catalog it is given; ``catalog.py`` merges it (this module never imports the catalog).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from fhir_adapter.errors import ConfigError
from fhir_adapter.terminology.concept import CodeEntry, CodeSpec, Concept, IgnoreEntry
from fhir_adapter.terminology.index import CodeIndex, check_conflicts


class BaseCatalog(Protocol):
    """What a site file is checked against (``catalog.Catalog``)."""

    aliases: Mapping[str, str]
    normalize: Mapping[str, str]

    def get(self, concept_id: str) -> Concept | None: ...
    def concepts(self) -> tuple[Concept, ...]: ...
    def specs(self) -> tuple[CodeSpec, ...]: ...


@dataclass(frozen=True, slots=True)
class SiteMappings:
    """A parsed, checked site file."""

    name: str
    label: str  # the file, as shown in messages
    specs: tuple[CodeSpec, ...] = ()
    system_aliases: dict[str, str] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    names: dict[str, tuple[str, ...]] = field(default_factory=dict)  # concept id -> the site's names for it
    ignore: tuple[IgnoreEntry, ...] = ()
    mrn_system: str | None = None  # the identifier system of the site's medical record numbers


def read_site(path: Path, catalog: BaseCatalog, label: str | None = None) -> SiteMappings:
    """Read and check a site file against ``catalog``; ConfigError lists every problem with file and entry."""
    from fhir_adapter.terminology.names import normalize
    from fhir_adapter.terminology.schema import read_json, validate

    label = label or str(path)
    document = read_json(path, label)
    validate(document, "site.schema.json", label)
    name = document["site"]
    errors: list[str] = []
    specs: list[CodeSpec] = []
    standard = set(catalog.aliases.values()) | {s.entry.system for s in catalog.specs()}
    aliases: dict[str, str] = {}
    for local, target in document.get("system_aliases", {}).items():
        target = catalog.aliases.get(target, target)
        if local in standard:
            errors.append(f"{label}: system_aliases[{local!r}]: a standard system cannot be made an alias")
        else:
            aliases[local] = target
    for i, raw in enumerate(document.get("codes", ())):
        where = f"{label}: codes[{i}] (concept {raw['concept']!r})"
        concept = catalog.get(raw["concept"])
        if concept is None:
            errors.append(f"{where}: unknown concept id {raw['concept']!r} "
                          f"(list them: fhir-adapter mappings concepts)")
            continue
        if "scale" in raw and concept.kind != "score":
            errors.append(f"{where}: 'scale' is for scores, and {concept.id!r} is a {concept.kind}")
        if "unit" in raw and concept.kind not in ("quantity", "score"):
            errors.append(f"{where}: 'unit' is for quantities and scores, and {concept.id!r} is a {concept.kind}")
        scale = raw.get("scale")
        if scale and not scale[0] < scale[1]:
            errors.append(f"{where}: 'scale' must be [min, max] with min < max")
        entry = CodeEntry(system=raw["system"], code=raw.get("code"), prefix=raw.get("prefix"),
                          display=raw.get("display", ""), status="SITE", source=f"site file {name!r} ({label})")
        specs.append(CodeSpec(concept.id, entry, where, shared=raw.get("shared", False), unit=raw.get("unit"),
                              scale=(float(scale[0]), float(scale[1])) if scale else None))
    names: dict[str, tuple[str, ...]] = {}
    for cid, given in document.get("names", {}).items():
        if catalog.get(cid) is None:
            errors.append(f"{label}: names[{cid!r}]: unknown concept id (list them: fhir-adapter mappings concepts)")
            continue
        for j, n in enumerate(given):
            if not normalize(n):
                errors.append(f"{label}: names[{cid!r}][{j}]: {n!r} has no letters or digits to match")
        names[cid] = tuple(given)
    ignore = [IgnoreEntry(raw["system"], raw.get("code"), raw.get("prefix"), raw.get("note", ""),
                          f"{label}: ignore[{i}]") for i, raw in enumerate(document.get("ignore", ()))]
    merged_aliases = {**catalog.aliases, **aliases}
    if not errors:
        concepts = {c.id: c for c in catalog.concepts()}
        # a site entry marked shared may overlap a catalog entry; mark the catalog side shared for the check
        site_shared = {(s.entry.system, s.entry.code, s.entry.prefix) for s in specs if s.shared}
        base = [CodeSpec(s.concept_id, s.entry, s.where, shared=s.shared or (
            s.entry.system, s.entry.code, s.entry.prefix) in site_shared, fallback=s.fallback)
            for s in catalog.specs()]
        errors = [e for e in check_conflicts(concepts, base + specs, merged_aliases, catalog.normalize)
                  if e.startswith(label)]
        errors += _mapped_ignores(ignore, [*catalog.specs(), *specs], concepts, merged_aliases, catalog.normalize)
    if errors:
        raise ConfigError("\n".join(errors))
    return SiteMappings(name=name, label=label, specs=tuple(specs), system_aliases=aliases,
                        units=dict(document.get("units", {})), names=names, ignore=tuple(ignore),
                        mrn_system=document.get("mrn_system"))


def _mapped_ignores(ignore: Iterable[IgnoreEntry], specs: Iterable[CodeSpec], concepts: Mapping[str, Concept],
                    aliases: Mapping[str, str], normalize: Mapping[str, str]) -> list[str]:
    """Errors for an ignored code that maps to a concept (the catalog's or the site's own): it cannot be both."""
    index = CodeIndex(aliases, normalize)
    for s in specs:
        index.add(concepts[s.concept_id], s.entry.system, code=s.entry.code, prefix=s.entry.prefix,
                  fallback=s.fallback)
    index.freeze()
    errors = []
    for e in ignore:
        if e.code is None:
            continue
        hits = index.lookup(e.system, e.code)
        if hits:
            errors.append(f"{e.where}: {e.system}|{e.code} maps to {hits[0].id!r}: a mapped code cannot be ignored")
    return errors


def check_site(path: Path, catalog: BaseCatalog) -> SiteMappings:
    """Validate a site file against ``catalog`` (``fhir-adapter mappings check``)."""
    return read_site(path, catalog, label=str(path))


def describe(site: SiteMappings) -> dict[str, Any]:
    """Counts, for the command line."""
    return {"site": site.name, "codes": len(site.specs), "system_aliases": len(site.system_aliases),
            "units": len(site.units), "names": sum(len(v) for v in site.names.values()), "ignore": len(site.ignore)}
