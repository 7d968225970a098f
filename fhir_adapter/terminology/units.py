"""Unit normalization and conversion into a concept's canonical UCUM unit (clinical.md §5).

Units are data (``mappings/units.json``): each UCUM code's dimension and factor, and the strings hospitals
send ("\u00d710^9/L", "μmol/L", "mm Hg", "lbs") mapped to UCUM. A concept's ``unit_factors`` add what only holds
for one analyte (hemoglobin mmol/L -> g/L). ``valueQuantity.code`` (UCUM) wins over ``unit`` text.

Library choice (measured on this machine, Python 3.11, details in the issue-3 report):

- ``ucumvert`` 0.3.2 (pint + a lark UCUM grammar) parses every UCUM code we meet, ``10*9/L``, ``ukat/L``,
  ``mm[Hg]``, ``[lb_av]``, ``{copies}/mL``, ``[IU]/mL``, ``%``, and its factors agree with the table here
  (tests compare them). But it costs 0.2 s to import plus 0.66 s to build its registry, about 2 ms to parse and
  convert a pair (36 us pre-parsed), returns a lark Token instead of a unit for an annotation alone
  (``{tbl}``), and silently equates annotations and arbitrary units: ``{copies}/mL`` = ``[IU]/mL`` = ``/mL``
  and ``[arb'U]`` = ``[IU]`` = 1, which would turn HBV DNA copies into IU one to one.
- ``pint`` alone cannot read UCUM (``10*9/L`` and ``/uL`` are syntax errors, ``mm[Hg]``, ``[lb_av]``,
  ``[IU]`` are unknown). ``ucumate`` 1.0.8 needs a Java 21 JVM (the JVM here is 17: it fails to start).

So the table is the primary path (a conversion is a cached dict lookup and a multiply, about 0.1 us), and
ucumvert is only a lazily loaded fallback for valid UCUM codes the table lacks, guarded so that annotations
and arbitrary units convert only into themselves. Without ucumvert installed the fallback is off and such
units are reported unknown.
"""

from __future__ import annotations

import json
import logging
import math
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any

from fhir_adapter.paths import data_dir
from fhir_adapter.terminology.concept import Concept

log = logging.getLogger("fhir_adapter.terminology")

UCUM = "http://unitsofmeasure.org"


@dataclass(frozen=True, slots=True)
class Converted:
    """A value in its concept's canonical unit, or why it could not be had (``value`` None, ``problem`` set).

    ``factor`` is what the reported value was multiplied by; ``source_unit`` the normalized UCUM unit it came
    in (or the raw text when unknown); ``comparator`` ("<", ">=", ...) is carried through untouched for
    qualitative.py; ``scale`` is a score's (min, max) from the concept, kept beside the value (MMT-8 out of 80
    or 150 is a scale, not a unit: it is never rescaled here).
    """

    value: float | None
    unit: str | None
    factor: float | None
    problem: str | None = None
    comparator: str | None = None
    source_unit: str | None = None
    scale: tuple[float, float] | None = None


class _Table:
    """``mappings/units.json`` loaded once: dimensions, factors, synonyms."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.units: dict[str, tuple[str, float]] = {k: (v[0], float(v[1])) for k, v in data["units"].items()}
        self.synonyms: dict[str, str] = {}
        folded: dict[str, list[str]] = {}
        for code in self.units:
            folded.setdefault(code.lower(), []).append(code)
        for key, codes in folded.items():
            if len(codes) == 1:  # a case-folded UCUM code is a synonym of itself unless two codes collide
                self.synonyms[key] = codes[0]
        for key, code in data["synonyms"].items():
            if code not in self.units:
                raise ValueError(f"units.json: synonym {key!r} maps to {code!r}, which is not in 'units'")
            self.synonyms[_fold(key)] = code
        self.enzyme_iu: dict[str, str] = dict(data.get("enzyme_iu", {}))
        self.arbitrary: frozenset[str] = frozenset(data.get("arbitrary", ()))


_SUPERSCRIPT = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹⁻", "0123456789-")
_SUPERSCRIPT_POWER = re.compile(r"10([⁰¹²³⁴⁵⁶⁷⁸⁹⁻]+)")
# "\u00d710^9", "x10E3", "*10^9", "10**9", "10e9", "10*9" at the start -> UCUM "10*9"
_POWER = re.compile("^(?:[x\u00d7*\u00b7])?10(?:\\^|\\*\\*|\\*|[eE])(-?\\d+)")
_BRACKETS = re.compile(r"\[[^\]]*\]|\{[^}]*\}")


def _normalize(text: str) -> str:
    """Case-preserving normal form of a unit string: NFKC, micro/mu as 'u', no spaces, powers of ten as 10*n."""
    s = _SUPERSCRIPT_POWER.sub(lambda m: "10^" + m.group(1).translate(_SUPERSCRIPT), text.strip())
    s = unicodedata.normalize("NFKC", s).replace("μ", "u").replace("µ", "u")
    s = "".join(s.split())
    return _POWER.sub(r"10*\1", s)


def _fold(text: str) -> str:
    return _normalize(text).lower()


@cache
def _units() -> _Table:
    """The tables of ``mappings/units.json``, read once."""
    with (data_dir("mappings") / "units.json").open(encoding="utf-8") as f:
        return _Table(json.load(f))


# ----------------------------------------------------------------------------------------------------------
# ucumvert fallback (lazy)

_ucum_registry: Any = None  # None: not tried yet; False: unavailable


def _ucumvert() -> Any:
    global _ucum_registry
    if _ucum_registry is None:
        try:
            from ucumvert import PintUcumRegistry

            _ucum_registry = PintUcumRegistry()
            log.info("ucumvert loaded for a UCUM code outside mappings/units.json")
        except Exception as e:  # missing or broken optional library: the table alone still works
            log.warning("ucumvert unavailable (%s): units outside mappings/units.json are unknown", e)
            _ucum_registry = False
    return _ucum_registry or None


def _ucum_quantity(code: str) -> Any:
    registry = _ucumvert()
    if registry is None:
        return None
    try:
        q = registry.from_ucum(code)
    except Exception:  # ucumvert raises lark and pint errors of many kinds for invalid codes
        return None
    return q if hasattr(q, "to") else None  # an annotation alone comes back as a lark Token


def _ucum_factor(source: str, target: str) -> float | None:
    """ucumvert's factor, refused when the annotations or arbitrary units of the two codes differ."""
    table = _units()
    marks_from = sorted(m for m in _BRACKETS.findall(source) if m.startswith("{") or m in table.arbitrary)
    marks_to = sorted(m for m in _BRACKETS.findall(target) if m.startswith("{") or m in table.arbitrary)
    if marks_from != marks_to:
        return None
    a, b = _ucum_quantity(source), _ucum_quantity(target)
    if a is None or b is None:
        return None
    try:
        return float((1.0 * a).to(b).magnitude)
    except Exception:  # pint DimensionalityError, offset units
        return None


# ----------------------------------------------------------------------------------------------------------
# public API


def parse_unit(code: str | None, text: str | None, synonyms: Mapping[str, str] | None = None) -> str | None:
    """The normalized UCUM code of a unit given as a UCUM ``code`` and/or display ``text``; None when unknown.

    The code wins when it is understood; text is read through the synonym table ("μmol/L", "\u00d710^9/L"),
    then through a site's own unit strings (``synonyms``: the site file's ``units``, exact match).
    """
    unit = _parse_unit(code, text)
    if unit is None and synonyms:
        for raw in (code, text):
            if isinstance(raw, str) and raw in synonyms:
                return synonyms[raw]
    return unit


@lru_cache(maxsize=4096)
def _parse_unit(code: str | None, text: str | None) -> str | None:
    table = _units()
    for raw in (code, text):
        if not raw or not isinstance(raw, str):
            continue
        if raw in table.units:
            return raw
        hit = table.synonyms.get(_fold(raw))
        if hit is not None:
            return hit
    for raw in (code, text):
        if raw and isinstance(raw, str):
            s = _normalize(raw)
            if _UCUM_LIKE.search(s) and _ucum_quantity(s) is not None:
                return s
    return None


# worth asking ucumvert: a UCUM-looking expression, not a plain word such as "tablet" (loading it costs 0.9 s)
_UCUM_LIKE = re.compile(r"[/.*\[{(^0-9]|^[A-Za-z]{1,4}$")


_pair_cache: dict[tuple[str, str], float | None] = {}


def unit_factor(source: str, target: str) -> float | None:
    """The factor from UCUM ``source`` to UCUM ``target`` (value_in_target = value * factor), or None."""
    key = (source, target)
    try:
        return _pair_cache[key]
    except KeyError:
        pass
    factor = _compute_factor(source, target)
    if len(_pair_cache) < 65536:
        _pair_cache[key] = factor
    return factor


def _compute_factor(source: str, target: str) -> float | None:
    if source == target:
        return 1.0
    table = _units()
    a, b = table.units.get(source), table.units.get(target)
    if a is not None and b is not None:
        if a[0] == b[0]:
            return _clean(a[1] / b[1])
        alias = table.enzyme_iu.get(source)
        if alias is not None and table.units[alias][0] == b[0]:
            return _clean(table.units[alias][1] / b[1])
        return None
    return _ucum_factor(source, target)


def _clean(factor: float) -> float:
    """12 significant digits: 0.001 / 0.000001 is 1000, not 999.9999999999999."""
    return float(f"{factor:.12g}")


def _unitless(unit: str | None) -> bool:
    return unit is None or unit == "1" or (unit.startswith("{") and unit.endswith("}"))


def factor_to_canonical(unit: str, concept: Concept) -> float | None:
    """The factor from UCUM ``unit`` into ``concept.unit``: general UCUM, else the concept's ``unit_factors``
    (directly, or after a general conversion into one of their units: umol/L -> mmol/L -> g/L)."""
    canonical = concept.unit
    if canonical is None or unit == canonical:
        return 1.0
    direct = concept.unit_factors.get(unit)
    if direct is not None:
        return float(direct)
    general = unit_factor(unit, canonical)
    if general is not None:
        return general
    for key, factor in concept.unit_factors.items():
        k = parse_unit(key, key) or key
        via = unit_factor(unit, k)
        if via is not None:
            return via * float(factor)
    return None


def to_canonical(
    value: Any, unit_code: str | None, unit_text: str | None, concept: Concept, default_unit: str | None = None,
    synonyms: Mapping[str, str] | None = None,
) -> Converted:
    """``value`` in ``unit_code``/``unit_text`` converted into ``concept.unit``; never raises for bad data.

    ``default_unit`` is the unit a value carries when it states none (a catalog code's ``unit``);
    ``synonyms`` a site's own unit strings (``Catalog.unit_synonyms``).
    """
    if not unit_code and not unit_text and default_unit:
        unit_code = default_unit
    raw = unit_code or unit_text
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return Converted(None, concept.unit, None, f"no numeric value for {concept.display}", scale=concept.scale)
    unit = parse_unit(unit_code, unit_text, synonyms)
    if unit is None:
        if raw:
            return Converted(None, concept.unit, None, f"unknown unit {raw!r} for {concept.display}",
                             source_unit=raw, scale=concept.scale)
        if _unitless(concept.unit):
            impossible = cannot_be(float(value), concept, f"{value:g}")
            return Converted(None if impossible else float(value), concept.unit, 1.0, impossible, scale=concept.scale)
        return Converted(None, concept.unit, None, f"no unit for {concept.display} (expected {concept.unit!r})",
                         scale=concept.scale)
    if concept.unit is None:  # nothing to convert into: the value stays as reported
        impossible = cannot_be(float(value), concept, f"{value:g} {raw}")
        return Converted(None if impossible else float(value), unit, 1.0, impossible, source_unit=unit,
                         scale=concept.scale)
    factor = factor_to_canonical(unit, concept)
    if factor is None:
        return Converted(None, concept.unit, None,
                         f"unconvertible unit {unit!r} for {concept.display} (canonical {concept.unit!r})",
                         source_unit=unit, scale=concept.scale)
    impossible = cannot_be(value * factor, concept, f"{value:g} {raw}")
    if impossible:
        return Converted(None, concept.unit, factor, impossible, source_unit=unit, scale=concept.scale)
    return Converted(value * factor, concept.unit, factor, source_unit=unit, scale=concept.scale)


def cannot_be(canonical: float, concept: Concept, shown: str) -> str | None:
    """Why a value (in the concept's canonical unit) cannot be true, from the concept's ``min``/``max``
    (``"value -3 10*9/L cannot be negative"``), or None."""
    low, high = concept.valid
    if low is not None and canonical < low:
        return f"value {shown} cannot be negative" if low == 0 else \
            f"value {shown} is below the lowest possible {concept.display} ({low:g} {concept.unit or ''})".rstrip()
    if high is not None and canonical > high:
        return f"value {shown} is above the highest possible {concept.display} ({high:g} {concept.unit or ''})"
    return None


def quantity_of(observation: dict[str, Any], concept: Concept, default_unit: str | None = None,
                synonyms: Mapping[str, str] | None = None) -> Converted:
    """``Observation.valueQuantity`` in the concept's canonical unit, its ``comparator`` carried through.

    ``code`` counts as UCUM when ``system`` is UCUM or absent; a code of another (local) system is read as text.
    """
    q = observation.get("valueQuantity")
    if not isinstance(q, dict):
        return Converted(None, concept.unit, None, f"no valueQuantity for {concept.display}", scale=concept.scale)
    return quantity_to_canonical(q, concept, default_unit, synonyms)


def quantity_to_canonical(q: dict[str, Any], concept: Concept, default_unit: str | None = None,
                          synonyms: Mapping[str, str] | None = None) -> Converted:
    """A FHIR Quantity (or SimpleQuantity) in the concept's canonical unit."""
    system = q.get("system")
    code = q.get("code") if system in (None, UCUM) else None
    text = q.get("unit")
    if code is None and system not in (None, UCUM) and not text:
        text = q.get("code")
    converted = to_canonical(q.get("value"), code, text, concept, default_unit, synonyms)
    comparator = q.get("comparator")
    if comparator:
        return Converted(converted.value, converted.unit, converted.factor, converted.problem, comparator,
                         converted.source_unit, converted.scale)
    return converted
