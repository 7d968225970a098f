"""The shape every terminology module shares: a clinical concept and how it is coded.

A ``Concept`` is one thing a criterion or response measure asks about (creatine kinase, FVC % predicted,
dermatomyositis, tofacitinib, the physician global activity VAS). The catalog (``mappings/concepts/``) gives
each its codes in every standard system, with where each code came from and how well it was verified; a
site file adds local codes (``CodeSpec``) and the codes it reviewed as irrelevant (``IgnoreEntry``). Units and
doses are converted into the concept's canonical UCUM unit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Verification = Literal["VERIFIED", "SECONDARY", "UNVERIFIED", "SITE"]
Kind = Literal["quantity", "qualitative", "score", "condition", "drug", "procedure", "finding"]


@dataclass(frozen=True, slots=True)
class CodeEntry:
    """One code of a concept: ``system|code``, or every code of ``system`` starting with ``prefix``."""

    system: str
    code: str | None = None
    prefix: str | None = None  # ICD-10 style ranges: "M33.1" matches M33.1, M33.10, M33.13 ...
    display: str = ""
    status: Verification = "UNVERIFIED"
    source: str = ""  # where the code came from, e.g. "clinical.md §4.1 (E,H,I)" or the site file


@dataclass(frozen=True, slots=True)
class Concept:
    """A clinical concept of the catalog.

    ``unit`` is the canonical UCUM unit of a quantity or score; ``unit_factors`` maps other units to the
    factor that converts them into it when no general UCUM conversion applies (molar<->mass for one analyte:
    ``{"umol/L": 0.0585}`` for bilirubin in mg/dL); ``scale`` is a score's (min, max). ``classes`` lists the
    value sets a drug belongs to ("glucocorticoid", "jak-inhibitor"...); ``prednisone_factor`` converts mg of a
    glucocorticoid into mg of prednisone.
    """

    id: str
    display: str
    kind: Kind
    codes: tuple[CodeEntry, ...] = ()
    unit: str | None = None
    unit_factors: dict[str, float] = field(default_factory=dict)
    scale: tuple[float, float] | None = None
    classes: tuple[str, ...] = ()
    prednisone_factor: float | None = None
    note: str = ""
    valid: tuple[float | None, float | None] = (None, None)  # the values that can be true, canonical unit
    derive: tuple[str, str] | None = None  # (percent concept, total concept): value = total x percent / 100


@dataclass(frozen=True, slots=True)
class CodeSpec:
    """One code entry as the catalog or a site file gave it, with the index-only attributes."""

    concept_id: str
    entry: CodeEntry
    where: str  # "mappings/concepts/labs.json: concepts[3] (id 'ck').codes[0]"
    shared: bool = False
    fallback: bool = False
    unit: str | None = None
    scale: tuple[float, float] | None = None


@dataclass(frozen=True, slots=True)
class IgnoreEntry:
    """A code a site reviewed as irrelevant to every study: ``system|code``, or every code of ``system``
    starting with ``prefix``. Records coded so are not counted as unmapped and are never possible matches."""

    system: str
    code: str | None = None
    prefix: str | None = None
    note: str = ""
    where: str = ""
