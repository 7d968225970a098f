"""The concept catalog: every concept a criterion or response measure uses, and how to recognise its codes.

Data lives in ``mappings/concepts/*.json`` (one file per domain), checked against
``mappings/schemas/concepts.schema.json`` when loaded, and ``mappings/names.json`` (names and synonyms of the
concepts and drug classes, for records whose codes map to nothing: ``names.py``); a site file (``site.py``)
adds a hospital's local codes, names and reviewed codes (``ignore``) on top. ``Catalog.load()`` is cached, and
classifying a CodeableConcept is a few dict lookups (``index.py``). A CodeableConcept maps when ANY of its
codings maps (issue 3 item 2).
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

from fhir_adapter.errors import ConfigError
from fhir_adapter.paths import data_dir
from fhir_adapter.terminology.concept import CodeEntry, CodeSpec, Concept, IgnoreEntry, Kind
from fhir_adapter.terminology.index import CodeIndex, check_conflicts
from fhir_adapter.terminology.names import NOTHING, Named, NameIndex, build
from fhir_adapter.terminology.site import SiteMappings, read_site

__all__ = ["Catalog", "CodeSpec", "Names", "check_conflicts", "read_catalog"]


@dataclass(frozen=True, slots=True)
class Names:
    """The names of ``mappings/names.json`` (and a site file's): per concept, per class, and the phrases that
    contain a name but name nothing ("CK-MB")."""

    concepts: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    classes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    unrelated: tuple[str, ...] = ()

    def plus(self, site: Mapping[str, tuple[str, ...]]) -> Names:
        merged = dict(self.concepts)
        for cid, names in site.items():
            merged[cid] = (*merged.get(cid, ()), *names)
        return Names(merged, self.classes, self.unrelated)

log = logging.getLogger(__name__)


class Catalog:
    """Concepts by id, by class and by code. Build with ``Catalog.load()``; immutable once built."""

    def __init__(self, concepts: Mapping[str, Concept], specs: Iterable[CodeSpec], *,
                 aliases: Mapping[str, str], normalize: Mapping[str, str], files: Iterable[str] = (),
                 site: str | None = None, unit_synonyms: Mapping[str, str] | None = None,
                 names: Names | None = None, ignore: Iterable[IgnoreEntry] = (), mrn_system: str | None = None):
        self._concepts = dict(concepts)
        self.name_data = names or Names()
        self._names: NameIndex | None = None
        self.ignore_entries = tuple(ignore)
        self._ignored: dict[tuple[Any, ...], bool] = {}
        self._classified: dict[tuple[Any, ...], tuple[Concept, ...]] = {}
        self._specs = tuple(specs)
        self.aliases: Mapping[str, str] = dict(aliases)
        self.normalize: Mapping[str, str] = dict(normalize)
        self.files = tuple(files)
        self.site = site
        self.mrn_system = mrn_system  # the site's MRN identifier system (record/mrn.py); None: typed MR
        self.unit_synonyms: Mapping[str, str] = dict(unit_synonyms or {})
        index = CodeIndex(self.aliases, self.normalize)
        for spec in self._specs:
            e = spec.entry
            index.add(self._concepts[spec.concept_id], e.system, code=e.code, prefix=e.prefix,
                      fallback=spec.fallback, unit=spec.unit, scale=spec.scale)
        for ig in self.ignore_entries:
            index.ignore(ig.system, code=ig.code, prefix=ig.prefix, note=ig.note)
        self._index = index.freeze()
        classes: dict[str, list[Concept]] = {}
        for c in self._concepts.values():
            for cls in c.classes:
                classes.setdefault(cls, []).append(c)
        self._classes = {k: tuple(v) for k, v in classes.items()}

    # -- loading ---------------------------------------------------------------------------------------

    @classmethod
    def load(cls, site: Path | str | None = None) -> Catalog:
        """The package's catalog (cached), with the site file ``site`` merged on top when given."""
        if site is None:
            return _default_catalog()
        path = Path(site).expanduser().resolve()
        try:
            stamp = path.stat().st_mtime_ns
        except OSError:
            stamp = 0
        return _site_catalog(str(path), stamp, str(site))

    # -- lookups ---------------------------------------------------------------------------------------

    def concept(self, concept_id: str) -> Concept:
        """The concept ``concept_id``; ConfigError when the catalog has none (a typo in a rule or site file)."""
        try:
            return self._concepts[concept_id]
        except KeyError:
            raise ConfigError(f"unknown concept id {concept_id!r} (list them: fhir-adapter mappings concepts)") \
                from None

    def get(self, concept_id: str) -> Concept | None:
        return self._concepts.get(concept_id)

    def __contains__(self, concept_id: object) -> bool:
        return concept_id in self._concepts

    def concepts(self, kind: Kind | str | None = None) -> tuple[Concept, ...]:
        """Every concept (of ``kind``, when given), in catalog order."""
        return tuple(c for c in self._concepts.values() if kind is None or c.kind == kind)

    def members(self, class_id: str) -> tuple[Concept, ...]:
        """The concepts of a value set ("glucocorticoid", "jak-inhibitor"...); empty for an unknown class."""
        return self._classes.get(class_id, ())

    def classes(self) -> tuple[str, ...]:
        return tuple(sorted(self._classes))

    def classify_coding(self, system: str | None, code: str | None) -> tuple[Concept, ...]:
        """The concepts one ``system|code`` maps to (exact code, then ICD-style prefixes; catch-alls last)."""
        return self._index.lookup(system, code)

    def classify(self, codeable_concept: Mapping[str, Any] | None) -> tuple[Concept, ...]:
        """The concepts a CodeableConcept maps to: the union over its codings (any coding suffices).

        Catch-all entries (e.g. any ATC L04AF code -> "JAK inhibitor, unspecified") count only when no coding
        maps to anything more specific. No text matching here: ``text`` alone maps to nothing.
        """
        if not codeable_concept:
            return ()
        codings = codeable_concept.get("coding")
        if not codings:
            return ()
        if type(codings) is not list:
            return self._classify(codings)
        # cached by codings: a population repeats a few hundred codes millions of times (the one-coding and the
        # several-codings paths treat odd values differently: the key tells them apart)
        try:
            if len(codings) == 1:
                c = codings[0]
                key: tuple[Any, ...] = (True, c.get("system"), c.get("code")) if isinstance(c, dict) else (True,)
            else:
                key = (False, *((c.get("system"), c.get("code")) for c in codings if isinstance(c, dict)))
            hit = self._classified.get(key)
        except TypeError:  # a system or code that is not hashable: worked out (or raised) as before, not cached
            return self._classify(codings)
        if hit is None:
            hit = self._classify(codings)
            if len(self._classified) < 100_000:
                self._classified[key] = hit
        return hit

    def _classify(self, codings: Any) -> tuple[Concept, ...]:
        if len(codings) == 1:
            c = codings[0]
            return self._index.lookup(c.get("system"), c.get("code")) if isinstance(c, dict) else ()
        return self._index.lookup_all((c.get("system"), c.get("code")) for c in codings if isinstance(c, dict))

    def is_mapped(self, codeable_concept: Mapping[str, Any] | None) -> bool:
        return bool(self.classify(codeable_concept))

    def local_unit(self, system: str, code: str) -> str | None:
        """The unit a site (or the catalog) gives for values coded ``system|code``, or None."""
        return self._index.unit(system, code)

    def local_scale(self, system: str, code: str) -> tuple[float, float] | None:
        """A score's (min, max) for ``system|code`` (e.g. MMT-8 out of 150), or None."""
        return self._index.scale(system, code)

    def specs(self) -> tuple[CodeSpec, ...]:
        """Every code entry with where it came from (for ``mappings check`` and the site merge)."""
        return self._specs

    # -- records whose codes map to nothing ------------------------------------------------------------------

    @property
    def names(self) -> NameIndex:
        """The name index (built on first use: only records whose codes map to nothing need it)."""
        if self._names is None:
            d = self.name_data
            self._names = build(self._concepts.values(), d.concepts, d.classes, d.unrelated)
        return self._names

    def named(self, codeable_concept: Any) -> Named:
        """The concepts and classes a CodeableConcept's text and code displays name (cached per text)."""
        texts = cc_texts(codeable_concept)
        return self.names.named_any(texts) if texts else NOTHING

    def ignored_coding(self, system: Any, code: Any) -> str | None:
        """The site's note when ``system|code`` is on its ``ignore`` list, else None."""
        return self._index.ignored(system, code)

    def is_ignored(self, codeable_concept: Any) -> bool:
        """Whether any coding of the CodeableConcept is one the site reviewed as irrelevant (cached by codings)."""
        if not self.ignore_entries or not isinstance(codeable_concept, Mapping):
            return False
        codings = codeable_concept.get("coding")
        if not isinstance(codings, list) or not codings:
            return False
        key = tuple((c.get("system"), c.get("code")) if isinstance(c, Mapping) else (None, None) for c in codings)
        hit = self._ignored.get(key)
        if hit is None:
            hit = any(self._index.ignored(s, c) is not None for s, c in key)
            if len(self._ignored) < 100_000:
                self._ignored[key] = hit
        return hit

    def with_site(self, site: SiteMappings) -> Catalog:
        """A new catalog: this one plus a parsed site file."""
        concepts = dict(self._concepts)
        added: dict[str, list[CodeEntry]] = {}
        for spec in site.specs:
            added.setdefault(spec.concept_id, []).append(spec.entry)
        for cid, entries in added.items():
            concepts[cid] = replace(concepts[cid], codes=concepts[cid].codes + tuple(entries))
        specs = [*self._specs, *site.specs]
        aliases = {**self.aliases, **site.system_aliases}
        return Catalog(concepts, specs, aliases=aliases, normalize=self.normalize,
                       files=(*self.files, site.label), site=site.name,
                       unit_synonyms={**self.unit_synonyms, **site.units}, names=self.name_data.plus(site.names),
                       ignore=(*self.ignore_entries, *site.ignore), mrn_system=site.mrn_system)

    def with_mrn_system(self, system: str | None) -> Catalog:
        """This catalog with another MRN system (``--mrn-system`` over the site file's): a shallow copy, so the
        cached catalog it came from keeps its own."""
        if system is None or system == self.mrn_system:
            return self
        other = copy.copy(self)
        other.mrn_system = system
        return other

    def __repr__(self) -> str:
        site = f", site {self.site}" if self.site else ""
        return f"<Catalog {len(self._concepts)} concepts, {len(self._specs)} codes{site}>"


# -- reading the package's files ----------------------------------------------------------------------------


def concept_files(folder: Path | None = None) -> list[Path]:
    folder = folder or data_dir("mappings") / "concepts"
    return sorted(p for p in folder.iterdir() if p.suffix == ".json" and not p.name.startswith("."))


def _concept_from(raw: dict[str, Any], where: str, specs: list[CodeSpec]) -> Concept:
    codes = []
    for j, rc in enumerate(raw["codes"]):
        entry = CodeEntry(system=rc["system"], code=rc.get("code"), prefix=rc.get("prefix"),
                          display=rc.get("display", ""), status=rc["status"], source=rc["source"])
        codes.append(entry)
        scale = rc.get("scale")
        specs.append(CodeSpec(raw["id"], entry, f"{where}.codes[{j}]", shared=rc.get("shared", False),
                              fallback=rc.get("fallback", False), unit=rc.get("unit"),
                              scale=(float(scale[0]), float(scale[1])) if scale else None))
    scale = raw.get("scale")
    return Concept(
        id=raw["id"], display=raw["display"], kind=raw["kind"], codes=tuple(codes), unit=raw.get("unit"),
        unit_factors={k: float(v) for k, v in raw.get("unit_factors", {}).items()},
        scale=(float(scale[0]), float(scale[1])) if scale else None, classes=tuple(raw.get("classes", ())),
        prednisone_factor=raw.get("prednisone_factor"), note=raw.get("note", ""),
        valid=(raw.get("min"), raw.get("max")),
        derive=(raw["derive"]["percent"], raw["derive"]["of"]) if "derive" in raw else None)


def read_catalog(folder: Path | None = None) -> Catalog:
    """Read, validate and index the catalog files (uncached; ``Catalog.load()`` caches)."""
    from fhir_adapter.terminology.schema import display_path, read_json, validate

    mappings = data_dir("mappings")
    systems_path = mappings / "code-systems.json"
    systems = read_json(systems_path)
    validate(systems, "code-systems.schema.json", display_path(systems_path))
    concepts: dict[str, Concept] = {}
    first_seen: dict[str, str] = {}
    specs: list[CodeSpec] = []
    errors: list[str] = []
    files = concept_files(folder)
    if not files:
        raise ConfigError(f"{display_path(folder or mappings / 'concepts')}: no concept files (*.json)")
    for path in files:
        label = display_path(path)
        document = read_json(path, label)
        try:
            validate(document, "concepts.schema.json", label)
        except ConfigError as e:
            errors.append(str(e))
            continue
        for i, raw in enumerate(document["concepts"]):
            where = f"{label}: concepts[{i}] (id {raw['id']!r})"
            if raw["id"] in concepts:
                errors.append(f"{where}: duplicate concept id, first defined at {first_seen[raw['id']]}")
                continue
            concepts[raw["id"]] = _concept_from(raw, where, specs)
            first_seen[raw["id"]] = where
    if not errors:
        errors = check_conflicts(concepts, specs, systems["aliases"], systems["normalize"])
    names_path = mappings / "names.json"
    names, name_errors = read_names(names_path, concepts)
    errors += name_errors
    if errors:
        raise ConfigError("\n".join(errors))
    log.debug("catalog: %d concepts, %d codes from %d files", len(concepts), len(specs), len(files))
    return Catalog(concepts, specs, aliases=systems["aliases"], normalize=systems["normalize"],
                   files=[*(display_path(p) for p in files), display_path(names_path)], names=names)


def read_names(path: Path, concepts: Mapping[str, Concept]) -> tuple[Names, list[str]]:
    """``mappings/names.json``, validated; errors for a concept or class id the catalog does not have."""
    from fhir_adapter.terminology.schema import display_path, read_json, validate

    label = display_path(path)
    document = read_json(path, label)
    try:
        validate(document, "names.schema.json", label)
    except ConfigError as e:
        return Names(), [str(e)]
    classes = {k for c in concepts.values() for k in c.classes}
    errors = [f"{label}: concepts[{cid!r}]: unknown concept id" for cid in document["concepts"] if cid not in concepts]
    errors += [f"{label}: classes[{k!r}]: no concept has this class" for k in document.get("classes", {})
               if k not in classes]
    return Names({k: tuple(v) for k, v in document["concepts"].items()},
                 {k: tuple(v) for k, v in document.get("classes", {}).items()},
                 tuple(document.get("unrelated", ()))), errors


def cc_texts(cc: Any) -> tuple[str, ...]:
    """A CodeableConcept's text and its codings' displays (the texts a name may be found in)."""
    if not isinstance(cc, Mapping):
        return ()
    out = [cc["text"]] if isinstance(cc.get("text"), str) and cc["text"] else []
    for c in cc.get("coding") or ():
        if isinstance(c, Mapping) and isinstance(c.get("display"), str) and c["display"] and c["display"] not in out:
            out.append(c["display"])
    return tuple(out)


@cache
def _default_catalog() -> Catalog:
    return read_catalog()


@cache
def _site_catalog(path: str, stamp: int, label: str) -> Catalog:
    base = _default_catalog()
    return base.with_site(read_site(Path(path), base, label=label))


def default_site() -> Path | None:
    """The site file named by ``$FHIR_ADAPTER_SITE``, if set."""
    value = os.environ.get("FHIR_ADAPTER_SITE")
    return Path(value) if value else None
