"""A patient's Observations as dated readings per catalog concept, in the concept's canonical unit.

One pass over the record's Observations: each is classified with the catalog (any coding suffices), its
``value[x]`` converted with ``terminology.units`` (a site code's unit applies when the value states none: VAS
in mm), and its scale maximum (MMT-8 out of 80 or 150: the code's or site's ``scale``, else
``referenceRange.high``) and upper limit of normal (``referenceRange.high`` in the same unit; criteria-tables.md
"ULN") kept beside it. A value that cannot be used keeps its ``problem`` and is never chosen.

``latest_before`` and ``nearest`` pick the reading of a date within a window (studies/response.json ``windows``).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

from fhir_adapter.record.dates import fhir_date
from fhir_adapter.record.draws import draw_key
from fhir_adapter.record.patient_record import PatientRecord
from fhir_adapter.terminology.catalog import Catalog
from fhir_adapter.terminology.concept import Concept
from fhir_adapter.terminology.units import Converted, cannot_be, factor_to_canonical, quantity_to_canonical


@dataclass(frozen=True, slots=True)
class Reading:
    """One value of one concept on one date (``value`` None when ``problem`` says why it cannot be used)."""

    concept: str
    when: date
    at: str  # the effective dateTime as written, for ordering within a day
    value: float | None
    unit: str | None
    source: str  # "Observation/abc"; a derived reading lists its parts joined by " + "
    problem: str | None = None
    reported: str = ""  # the value as the source wrote it, e.g. "15.0 ukat/L"
    scale_max: float | None = None
    uln: float | None = None
    derived: str | None = None  # how a derived value was computed
    draw: tuple[str, str] | None = None  # the blood draw it came from (record.draws.draw_key)

    @property
    def usable(self) -> bool:
        return self.value is not None and self.problem is None

    def describe(self) -> dict[str, Any]:
        """The JSON shape of a reading in a result."""
        out: dict[str, Any] = {"value": _num(self.value), "date": self.when.isoformat(), "unit": self.unit,
                               "source": self.source}
        if self.reported:
            out["reported"] = self.reported
        if self.derived:
            out["derived"] = self.derived
        return out


def _num(x: float | None) -> float | int | None:
    if x is None:
        return None
    r = round(x, 4)
    return int(r) if r == int(r) and abs(r) < 1e15 else r


@dataclass(slots=True)
class Readings:
    """Readings by concept id, each list sorted by date; ``unusable`` keeps the values set aside with why."""

    by_concept: dict[str, list[Reading]] = field(default_factory=dict)

    def of(self, concept_id: str) -> list[Reading]:
        return self.by_concept.get(concept_id, [])

    def usable(self, concept_id: str) -> list[Reading]:
        return [r for r in self.of(concept_id) if r.usable]

    def add(self, reading: Reading) -> None:
        self.by_concept.setdefault(reading.concept, []).append(reading)

    def sort(self) -> None:
        for rs in self.by_concept.values():
            rs.sort(key=lambda r: (r.when, r.at))


# -- reading a record ------------------------------------------------------------------------------------------


def _effective(obs: dict[str, Any]) -> tuple[date | None, str]:
    for key in ("effectiveDateTime", "effectiveInstant"):
        value = obs.get(key)
        if isinstance(value, str):
            return (fhir_date(value) if len(value) >= 10 else None), value
    period = obs.get("effectivePeriod")
    if isinstance(period, dict) and isinstance(period.get("start"), str):
        value = period["start"]
        return (fhir_date(value) if len(value) >= 10 else None), value
    return None, ""


def _quantity(obs: dict[str, Any]) -> dict[str, Any] | None:
    q = obs.get("valueQuantity")
    if isinstance(q, dict):
        return q
    for key in ("valueInteger", "valueDecimal"):
        if isinstance(obs.get(key), int | float) and not isinstance(obs.get(key), bool):
            return {"value": obs[key]}
    return None


def _reported(q: dict[str, Any] | None) -> str:
    if not q:
        return ""
    unit = q.get("unit") or q.get("code") or ""
    comparator = q.get("comparator") or ""
    return f"{comparator}{q.get('value')} {unit}".strip()


def _codings(obs: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for c in (obs.get("code") or {}).get("coding") or ():
        if isinstance(c, dict) and isinstance(c.get("system"), str) and isinstance(c.get("code"), str):
            out.append((c["system"], c["code"]))
    return out


def _local(catalog: Catalog, codings: list[tuple[str, str]], concept: Concept) -> tuple[str | None, float | None]:
    """The unit and scale maximum a code of this concept gives (site file or catalog), if any."""
    unit = scale = None
    for system, code in codings:
        if concept not in catalog.classify_coding(system, code):
            continue
        unit = unit or catalog.local_unit(system, code)
        s = catalog.local_scale(system, code)
        if s is not None and scale is None:
            scale = s[1]
    return unit, scale


def _reference_high(obs: dict[str, Any]) -> dict[str, Any] | None:
    for rr in obs.get("referenceRange") or ():
        if isinstance(rr, dict) and isinstance(rr.get("high"), dict) and rr["high"].get("value") is not None:
            return rr["high"]
    return None


def _convert(q: dict[str, Any] | None, concept: Concept, default_unit: str | None) -> Converted:
    if q is None:
        return Converted(None, concept.unit, None, f"no numeric value for {concept.display}")
    return quantity_to_canonical(q, concept, default_unit)


def read_observation(obs: dict[str, Any], concept: Concept, catalog: Catalog) -> Reading | None:
    """The reading an Observation gives for ``concept``; None when it has no usable date."""
    when, at = _effective(obs)
    if when is None:
        return None
    codings = _codings(obs)
    local_unit, local_scale = _local(catalog, codings, concept)
    q = _quantity(obs)
    converted = _convert(q, concept, local_unit)
    problem = converted.problem
    if converted.comparator and problem is None:
        problem = f"bounded value {converted.comparator}{q.get('value') if q else ''}: not an exact number"
    high = _reference_high(obs)
    uln = scale_max = None
    if concept.kind == "quantity" and high is not None:
        high_q = dict(high)
        if not high_q.get("unit") and not high_q.get("code") and q:
            high_q.update({k: q[k] for k in ("unit", "code", "system") if k in q})
        hc = quantity_to_canonical(high_q, concept, local_unit)
        uln = hc.value
    if concept.kind == "score":
        if local_scale is not None:
            scale_max = local_scale
        elif concept.scale is not None:
            scale_max = concept.scale[1]
        elif high is not None and isinstance(high.get("value"), int | float):
            scale_max = float(high["value"])
        low = concept.scale[0] if concept.scale else 0.0
        v = converted.value
        if v is not None and problem is None and scale_max is not None and not (low <= v <= scale_max):
            problem = (f"{_reported(q) or v} is outside the {concept.display} scale {low:g}-{scale_max:g} "
                       f"{concept.unit or ''}".rstrip())
    return Reading(concept=concept.id, when=when, at=at, value=converted.value, unit=converted.unit,
                   source=f"Observation/{obs.get('id')}", problem=problem, reported=_reported(q),
                   scale_max=scale_max, uln=uln, draw=draw_key(obs))


def read_readings(record: PatientRecord, catalog: Catalog, wanted: Collection[str]) -> Readings:
    """Every reading of the ``wanted`` concepts in the record's Observations; a wanted concept with a ``derive``
    rule (lymphocytes = WBC x lymphocyte % / 100) also gets the readings derived from one draw on the days it has
    no usable reading of its own."""
    out = Readings()
    wanted = set(wanted)
    rules = {c: catalog.concept(c).derive for c in wanted if c in catalog and catalog.concept(c).derive}
    reading_ids = wanted | {part for rule in rules.values() for part in rule if rule}
    for obs in record.of("Observation"):
        for concept in catalog.classify(obs.get("code")):
            if concept.id in reading_ids:
                reading = read_observation(obs, concept, catalog)
                if reading is not None:
                    out.add(reading)
    for cid, rule in rules.items():
        assert rule is not None
        days = {r.when for r in out.of(cid) if r.usable}
        for r in same_draw_percent(out.of(rule[0]), out.of(rule[1]), catalog.concept(cid)):
            if r.when not in days:
                out.add(r)
    out.sort()
    return out


def same_draw_percent(parts: Iterable[Reading], totals: Iterable[Reading], concept: Concept) -> list[Reading]:
    """total x part (%) / 100 for each part with a total of the same draw (same Specimen, or the same minute when
    neither names one), both exact and usable, the total's unit converting exactly into ``concept.unit``."""
    by_draw: dict[tuple[str, str], Reading] = {}
    for t in totals:
        if t.usable and t.draw is not None:  # a bounded value is never usable
            by_draw.setdefault(t.draw, t)
    out = []
    for p in parts:
        t = by_draw.get(p.draw) if p.draw is not None else None
        if t is None or not p.usable or p.unit != "%" or t.unit is None or p.value is None or t.value is None:
            continue
        factor = factor_to_canonical(t.unit, concept)
        if factor is None:
            continue
        value = round(t.value * p.value / 100 * factor, 9)
        how = (f"derived: {p.value:g}% of {t.concept.upper()} {t.value:g} {t.unit} ({p.source}, {t.source}) = "
               f"{value:g} {concept.unit}")
        problem = cannot_be(value, concept, f"{value:g} {concept.unit}")
        out.append(Reading(concept=concept.id, when=p.when, at=p.at, value=None if problem else value,
                           unit=concept.unit, source=f"{p.source} + {t.source}", problem=problem, derived=how,
                           draw=p.draw))
    return out


# -- derived readings ------------------------------------------------------------------------------------------


def same_day_ratio(numerators: Iterable[Reading], denominators: Iterable[Reading], concept: str, unit: str | None,
                   factor: float, how: str) -> list[Reading]:
    """numerator / denominator x factor for each date both have (the last of each that day)."""
    last_den: dict[date, Reading] = {}
    for d in denominators:
        if d.usable and d.value:
            last_den[d.when] = d
    last_num: dict[date, Reading] = {}
    for n in numerators:
        if n.usable:
            last_num[n.when] = n
    out = []
    for day, n in sorted(last_num.items()):
        d = last_den.get(day)
        if d is None or n.value is None or d.value is None:
            continue
        out.append(Reading(concept=concept, when=day, at=n.at, value=n.value / d.value * factor, unit=unit,
                           source=f"{n.source} + {d.source}", derived=how))
    return out


def same_day_product(parts: Iterable[Reading], totals: Iterable[Reading], concept: str, unit: str | None,
                     factor: float, how: str) -> list[Reading]:
    """part (%) / 100 x total x factor for each date both have (a percentage of a count)."""
    last_total: dict[date, Reading] = {t.when: t for t in totals if t.usable}
    out = []
    for p in parts:
        t = last_total.get(p.when)
        if not p.usable or t is None or p.value is None or t.value is None:
            continue
        out.append(Reading(concept=concept, when=p.when, at=p.at, value=p.value / 100 * t.value * factor, unit=unit,
                           source=f"{p.source} + {t.source}", derived=how))
    return out


def merge(direct: list[Reading], derived: list[Reading]) -> list[Reading]:
    """The direct readings, plus derived ones on dates with no usable direct reading."""
    days = {r.when for r in direct if r.usable}
    merged = [*direct, *(r for r in derived if r.when not in days)]
    merged.sort(key=lambda r: (r.when, r.at))
    return merged


# -- picking by date -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pick:
    """The reading chosen for a date, or None with the readings in the window that could not be used."""

    reading: Reading | None
    set_aside: tuple[Reading, ...] = ()

    def problems(self) -> list[str]:
        return [f"{r.source} ({r.when.isoformat()}): {r.problem}" for r in self.set_aside if r.problem]


def latest_before(readings: Iterable[Reading], day: date, days: int) -> Pick:
    """The latest usable reading on or before ``day`` and no more than ``days`` before it."""
    inside = [r for r in readings if 0 <= (day - r.when).days <= days]
    usable = [r for r in inside if r.usable]
    if not usable:
        return Pick(None, tuple(inside))
    return Pick(max(usable, key=lambda r: (r.when, r.at)))


def nearest(readings: Iterable[Reading], day: date, days: int, after: date | None = None) -> Pick:
    """The usable reading nearest ``day`` within ``days`` either side (the earlier on a tie), after ``after``."""
    inside = [r for r in readings if abs((r.when - day).days) <= days and (after is None or r.when > after)]
    usable = [r for r in inside if r.usable]
    if not usable:
        return Pick(None, tuple(inside))
    best = min(abs((r.when - day).days) for r in usable)
    ties = [r for r in usable if abs((r.when - day).days) == best]
    earliest = min(r.when for r in ties)
    return Pick(max((r for r in ties if r.when == earliest), key=lambda r: r.at))


def with_unit(reading: Reading, unit: str | None) -> Reading:
    return replace(reading, unit=unit)
