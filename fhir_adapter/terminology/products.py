"""Drug products read as their ingredients: RxNorm normalized names and the catalog's ingredient names.

Hospitals code drugs as products (issue "Drug products → ingredients and strengths"). A product code the
catalog lists maps like any code; a product whose code nothing maps is read from its name, but only when the
name follows RxNorm's grammar for normalized names, which is exact enough to be read like a code:

- clinical drug (SCD): ``[quantity] ingredient strength UNIT [/ ingredient strength UNIT ...] Dose Form``,
  e.g. "tofacitinib 5 MG Oral Tablet", "0.4 ML adalimumab 100 MG/ML Prefilled Syringe";
- branded drug (SBD): the same and ``[Brand]``: "tofacitinib 5 MG Oral Tablet [Xeljanz]";
- pack: ``{N (drug) [/ M (drug)] } Pack [Brand]``: "{21 (methylprednisolone 4 MG Oral Tablet) } Pack [Medrol]".

Units and dose forms must be written as RxNorm writes them (``MG``, ``Oral Tablet``); free text such as
"tofacitinib 5mg bid" or "Tofacitinib 5 mg tablets" is not read. An ingredient matches a catalog drug concept
by name (the concept's display and its codes' displays, case-insensitive), first as written, then without
RxNorm qualifiers and one salt word at a time ("methylprednisolone sodium succinate" -> "methylprednisolone";
"mycophenolate mofetil" is itself a catalog name). The grammar's words are data: ``mappings/products.json``.
Parsing is cached per distinct name and matching per catalog and name, never per resource.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any

from fhir_adapter.paths import data_dir
from fhir_adapter.terminology.concept import Concept
from fhir_adapter.terminology.dosage import Strength

_NUMBER = r"\d+(?:\.\d+)?"


@dataclass(frozen=True, slots=True)
class Component:
    """One ingredient of a product name with its strength as written ("tofacitinib", 5, "MG")."""

    substance: str
    amount: float
    unit: str
    strength: Strength | None  # mg per unit of a countable dose form, or per mL; None when no mg per unit


@dataclass(frozen=True, slots=True)
class ProductName:
    """A parsed RxNorm normalized name."""

    text: str
    components: tuple[Component, ...]
    dose_form: str
    route: str | None  # the route the dose form implies ("oral", "topical"...), None when it implies none
    discrete: bool  # one unit is a countable solid (tablet, capsule): mg per unit x units gives mg
    brand: str | None = None
    pack: bool = False
    note: str | None = None  # why the strengths cannot be used per unit (a pack of several strengths)


class _Grammar:
    def __init__(self, data: Mapping[str, Any]) -> None:
        self.units: dict[str, tuple[float | None, str | None]] = {
            u: (v["mg"], v.get("per")) for u, v in data["units"].items()}
        self.forms: dict[str, tuple[str | None, bool]] = {
            f: (v["route"], v["discrete"]) for f, v in data["dose_forms"].items()}
        self.salts = tuple(sorted(data["salts"], key=len, reverse=True))
        self.prefixes = tuple(p.lower() for p in data["prefixes"])
        self.suffixes = tuple(s.lower() for s in data["suffixes"])
        self.biosimilar = re.compile(data["biosimilar_suffix"] + "$")
        units = "|".join(re.escape(u) for u in sorted(self.units, key=len, reverse=True))
        forms = "|".join(re.escape(f) for f in sorted(self.forms, key=len, reverse=True))
        quantity = "|".join(re.escape(u) for u in data["quantity_units"])
        packs = "|".join(re.escape(w) for w in data["pack_words"])
        # a substance starts with a letter and holds no digit-led word: "immunoglobulin G, human"
        self.component = re.compile(rf"(?P<sub>[A-Za-z][^/{{}}\[\]]*?) (?P<amt>{_NUMBER}) (?P<unit>{units})")
        self.drug = re.compile(
            rf"(?:(?P<qty>{_NUMBER}) (?P<qunit>{quantity}) )?(?P<comps>.+?) (?P<form>{forms})"
            r"(?: \[(?P<brand>[^\[\]]+)\])?")
        self.pack = re.compile(rf"\{{(?P<parts>.+?)\s*\}} (?:{packs})(?: \[(?P<brand>[^\[\]]+)\])?")


@cache
def grammar() -> _Grammar:
    """The tables of ``mappings/products.json``, validated once."""
    from fhir_adapter.terminology.schema import display_path, read_json, validate

    path = data_dir("mappings") / "products.json"
    doc = read_json(path)
    validate(doc, "products.schema.json", display_path(path))
    return _Grammar(doc)


# --- parsing ---------------------------------------------------------------------------------------------------


def _component(text: str, discrete: bool) -> Component | None:
    g = grammar()
    m = g.component.fullmatch(text)
    if m is None:
        return None
    amount = float(m["amt"])
    mg, per = g.units[m["unit"]]
    strength = None
    if mg is not None and per == "form":
        strength = Strength(amount * mg) if discrete else None
    elif mg is not None and per:
        strength = Strength(amount * mg, per, 1.0)
    return Component(m["sub"].strip(), amount, m["unit"], strength)


def _drug(text: str) -> ProductName | None:
    g = grammar()
    m = g.drug.fullmatch(text)
    if m is None:
        return None
    route, discrete = g.forms[m["form"]]
    parts = [_component(p, discrete) for p in m["comps"].split(" / ")]
    if not parts or any(p is None for p in parts):
        return None
    return ProductName(text, tuple(p for p in parts if p is not None), m["form"], route, discrete, m["brand"])


def _pack_parts(text: str) -> list[tuple[int, str]] | None:
    """``21 (drug) / 7 (drug)`` -> [(21, drug), (7, drug)], parentheses balanced; None when malformed."""
    out: list[tuple[int, str]] = []
    i, n = 0, len(text)
    while i < n:
        m = re.compile(r"\s*(\d+) \(").match(text, i)
        if m is None:
            return None
        depth, j = 1, m.end()
        while j < n and depth:
            depth += {"(": 1, ")": -1}.get(text[j], 0)
            j += 1
        if depth:
            return None
        out.append((int(m[1]), text[m.end():j - 1]))
        rest = text[j:]
        sep = re.match(r"\s*/\s*", rest)
        if sep is None:
            return out if not rest.strip() else None
        i = j + sep.end()
    return None


@lru_cache(maxsize=65536)
def parse_name(text: str | None) -> ProductName | None:
    """The RxNorm normalized name ``text`` as ingredients, strengths and dose form; None when ``text`` does not
    follow RxNorm's grammar (free text, an ingredient alone, a name without a dose form)."""
    if not isinstance(text, str) or not text or len(text) > 500:
        return None
    text = " ".join(text.split())
    m = grammar().pack.fullmatch(text)
    if m is None:
        return _drug(text)
    parts = _pack_parts(m["parts"])
    drugs = [_drug(t) for _, t in parts] if parts else []
    if not drugs or any(d is None for d in drugs):
        return None
    first = drugs[0]
    assert first is not None
    same = all(d is not None and d.components == first.components and d.dose_form == first.dose_form for d in drugs)
    if same:
        return ProductName(text, first.components, first.dose_form, first.route, first.discrete, m["brand"], True)
    components: dict[str, Component] = {}
    for d in drugs:
        for c in d.components if d else ():
            components.setdefault(c.substance.lower(), Component(c.substance, c.amount, c.unit, None))
    routes = {d.route for d in drugs if d}
    forms = {d.dose_form for d in drugs if d}
    return ProductName(text, tuple(components.values()), forms.pop() if len(forms) == 1 else "Pack",
                       routes.pop() if len(routes) == 1 else None, False, m["brand"], True,
                       "a pack of several strengths or products: no mg per unit")


# --- ingredient names -----------------------------------------------------------------------------------------


def _plain(name: str) -> str:
    return " ".join(name.lower().split())


def _names_of(text: str) -> list[str]:
    """"rifampicin (rifampin)" -> ["rifampicin", "rifampin"]; a parenthesis of several words is a comment."""
    text = _plain(text)
    if not text or any(ch.isdigit() for ch in text):
        return []
    m = re.fullmatch(r"(.+?) \(([^()]+)\)", text)
    if m is None:
        return [text]
    inner = m[2]
    return [m[1], inner] if " " not in inner.strip() or "/" in inner else [m[1]]


class IngredientNames:
    """Catalog drug concepts by ingredient name: each concept's display and its codes' displays (lower case).
    A name two concepts share names neither; catch-all concepts (ATC groups) have no names."""

    def __init__(self, concepts: Iterable[Concept]) -> None:
        found: dict[str, dict[str, Concept]] = {}
        for concept in concepts:
            if concept.kind != "drug" or not concept.codes or all(c.code is None for c in concept.codes):
                continue
            for text in (concept.display, *(c.display for c in concept.codes)):
                for name in _names_of(text):
                    found.setdefault(name, {})[concept.id] = concept
        self._by_name = {name: next(iter(cs.values())) for name, cs in found.items() if len(cs) == 1}

    def __len__(self) -> int:
        return len(self._by_name)

    def concept(self, substance: str) -> Concept | None:
        """The concept ``substance`` names, as written or without qualifiers and salt words."""
        hit = self.match(substance)
        return hit[0] if hit else None

    def match(self, substance: str) -> tuple[Concept, str] | None:
        """(concept, the name it matched under) for ``substance``, trying shorter names one step at a time."""
        g = grammar()
        name = _plain(substance)
        for _ in range(8):
            hit = self._by_name.get(name)
            if hit is not None:
                return hit, name
            shorter = _shorten(name, g)
            if shorter is None or shorter == name:
                return None
            name = shorter
        return None


def _shorten(name: str, g: _Grammar) -> str | None:
    """``name`` with one qualifier, biosimilar suffix or trailing salt word removed; None when none applies."""
    for prefix in g.prefixes:
        if name.startswith(prefix + " "):
            return name[len(prefix) + 1:]
    for suffix in g.suffixes:
        if name.endswith(suffix):
            return name[: -len(suffix)].strip()
    m = g.biosimilar.search(name)
    if m is not None and m.start() > 0:
        return name[: m.start()]
    for salt in g.salts:
        if name.endswith(" " + salt):
            return name[: -len(salt) - 1]
    return None


# --- a product name read against a catalog ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReadName:
    """A parsed product name and the catalog concepts of its ingredients."""

    name: ProductName
    ingredients: tuple[tuple[Concept, Component], ...]  # the components that name a catalog concept
    combination: Concept | None  # the concept of the whole combination ("sulfamethoxazole / trimethoprim")
    unmatched: tuple[str, ...]  # substances the catalog does not name


_INDEXES: dict[int, tuple[Any, IngredientNames, dict[tuple[str, str], str]]] = {}
_READ: dict[tuple[int, str], tuple[Any, ReadName | None]] = {}  # the catalog kept: its id stays its own


def _index(catalog: Any) -> tuple[IngredientNames, dict[tuple[str, str], str]]:
    """The catalog's ingredient names and the display of each of its drug codes (built once per catalog)."""
    hit = _INDEXES.get(id(catalog))
    if hit is not None and hit[0] is catalog:
        return hit[1], hit[2]
    concepts = catalog.concepts("drug") if hasattr(catalog, "concepts") else ()
    aliases = getattr(catalog, "aliases", {}) or {}
    displays: dict[tuple[str, str], str] = {}
    for concept in concepts:
        for code in concept.codes:
            if code.code is not None and code.display:
                displays.setdefault((aliases.get(code.system, code.system), code.code.strip()), code.display)
    names = IngredientNames(concepts)
    if len(_INDEXES) > 16:
        _INDEXES.clear()
    _INDEXES[id(catalog)] = (catalog, names, displays)
    return names, displays


def ingredient_concept(catalog: Any, substance: str | None) -> Concept | None:
    """The catalog drug concept an ingredient name (a substance, not a product) names, or None."""
    if not isinstance(substance, str) or not substance.strip() or len(substance) > 200:
        return None
    return _index(catalog)[0].concept(substance)


def catalog_display(catalog: Any, system: Any, code: Any) -> str | None:
    """The catalog's display for a drug code (an RxNorm product's normalized name), or None."""
    if not isinstance(system, str) or not isinstance(code, str):
        return None
    _, displays = _index(catalog)
    aliases = getattr(catalog, "aliases", {}) or {}
    return displays.get((aliases.get(system, system), code.strip()))


def read_name(catalog: Any, text: str | None) -> ReadName | None:
    """``text`` parsed as an RxNorm name and its ingredients matched against ``catalog`` (cached); None when
    it is not an RxNorm name."""
    if not isinstance(text, str):
        return None
    key = (id(catalog), text)
    hit = _READ.get(key)
    if hit is not None and hit[0] is catalog:
        return hit[1]
    parsed = parse_name(text)
    result = None
    if parsed is not None:
        names, _ = _index(catalog)
        matched = [(names.match(c.substance), c) for c in parsed.components]
        ingredients = tuple((m[0], c) for m, c in matched if m is not None)
        unmatched = tuple(c.substance for m, c in matched if m is None)
        combination = None
        if len(parsed.components) > 1 and not unmatched:
            combination = names.concept(" / ".join(m[1] for m, _ in matched if m is not None))
        result = ReadName(parsed, ingredients, combination, unmatched)
    if len(_READ) > 100_000:
        _READ.clear()
    _READ[key] = (catalog, result)
    return result
