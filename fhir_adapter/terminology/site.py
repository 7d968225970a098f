"""Site mappings: a hospital's local codes, code-system aliases and unit strings, as a JSON file.

The file (format: ``mappings/schemas/site.schema.json``; worked example ``fhir_adapter/sample/site-mappings.json``;
README "Site mappings") is validated on load; every error names the file and the entry. Its codes join the
catalog with status ``SITE``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fhir_adapter.errors import ConfigError
from fhir_adapter.terminology.concept import CodeEntry

if TYPE_CHECKING:
    from fhir_adapter.terminology.catalog import Catalog, CodeSpec


@dataclass(frozen=True, slots=True)
class SiteMappings:
    """A parsed, checked site file."""

    name: str
    label: str  # the file, as shown in messages
    specs: tuple[CodeSpec, ...] = ()
    system_aliases: dict[str, str] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)


def read_site(path: Path, catalog: Catalog, label: str | None = None) -> SiteMappings:
    """Read and check a site file against ``catalog``; ConfigError lists every problem with file and entry."""
    from fhir_adapter.terminology.catalog import CodeSpec, check_conflicts
    from fhir_adapter.terminology.schema import read_json, validate

    label = label or str(path)
    document = read_json(path, label)
    validate(document, "site.schema.json", label)
    name = document["site"]
    errors: list[str] = []
    specs: list[CodeSpec] = []
    standard = set(catalog.aliases.values()) | {e.system for s in catalog.specs() for e in (s.entry,)}
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
    if not errors:
        concepts = {c.id: c for c in catalog.concepts()}
        merged_aliases = {**catalog.aliases, **aliases}
        # a site entry marked shared may overlap a catalog entry; mark the catalog side shared for the check
        site_shared = {(s.entry.system, s.entry.code, s.entry.prefix) for s in specs if s.shared}
        base = [CodeSpec(s.concept_id, s.entry, s.where, shared=s.shared or (
            s.entry.system, s.entry.code, s.entry.prefix) in site_shared, fallback=s.fallback)
            for s in catalog.specs()]
        errors = [e for e in check_conflicts(concepts, base + specs, merged_aliases, catalog.normalize)
                  if e.startswith(label)]
    if errors:
        raise ConfigError("\n".join(errors))
    return SiteMappings(name=name, label=label, specs=tuple(specs), system_aliases=aliases,
                        units=dict(document.get("units", {})))


def check_site(path: Path, catalog: Catalog | None = None) -> SiteMappings:
    """Validate a site file against the package catalog (``fhir-adapter mappings check``)."""
    from fhir_adapter.terminology.catalog import Catalog

    return read_site(path, catalog or Catalog.load(), label=str(path))


def describe(site: SiteMappings) -> dict[str, Any]:
    """Counts, for the command line."""
    return {"site": site.name, "codes": len(site.specs), "system_aliases": len(site.system_aliases),
            "units": len(site.units)}
