"""Drug exposures of a patient record, and the current glucocorticoid dose (criteria I4, I5, E12-E15).

One ``Exposure`` per ingredient concept, per resource and dosage step, from MedicationStatement,
MedicationRequest and MedicationAdministration: the drug (via ``catalog.classify``; a combination product
gives one exposure per ingredient), route, dates, status and the daily mg with the reason when it cannot be
had. ``current_glucocorticoid_dose`` sums the prednisone-equivalent mg/day (clinical.md §4.7, factors from the
catalog's ``prednisone_factor``) of the glucocorticoids active on a date.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Protocol

import orjson

from fhir_adapter.record.dates import fhir_date
from fhir_adapter.terminology.concept import Concept
from fhir_adapter.terminology.dosage import (
    DailyDose,
    Strength,
    daily_dose,
    route_of,
    strength_from_ratio,
    strengths_from_text,
    tables,
)
from fhir_adapter.terminology.products import ReadName, catalog_display, ingredient_concept, read_name

log = logging.getLogger("fhir_adapter.terminology")

DRUG_TYPES = ("MedicationAdministration", "MedicationStatement", "MedicationRequest")
GLUCOCORTICOID = "glucocorticoid"
# statuses that mean the drug was not (or not yet) taken
NOT_TAKEN = frozenset({"not-taken", "not-done", "cancelled", "entered-in-error", "draft", "intended"})
ONGOING = frozenset({"active", "in-progress"})
# for one drug on one date, what was given beats what was said beats what was ordered (no double counting)
_RANK = {"MedicationAdministration": 0, "MedicationStatement": 1, "MedicationRequest": 2}


class Classifier(Protocol):
    def classify(self, codeable_concept: Mapping[str, Any] | None) -> tuple[Concept, ...]: ...


class Resolver(Protocol):
    def resolve(self, reference: Any, within: dict[str, Any] | None = None) -> dict[str, Any] | None: ...
    def of(self, resource_type: str) -> list[dict[str, Any]]: ...


@dataclass(frozen=True, slots=True)
class Exposure:
    """One ingredient taken (or ordered, or given) over a period, from one resource."""

    concept: Concept
    source: str  # "MedicationStatement/abc"
    status: str | None
    route: str | None  # "oral", "intravenous", ... None when not stated
    start: date | None
    end: date | None
    ongoing: bool  # no end and a status that says it goes on
    dose: DailyDose
    product: str = ""  # the product's text or display, for people
    basis: str = ""  # how the drug was read when no code named it: "read from the product name '...'"

    @property
    def classes(self) -> tuple[str, ...]:
        return self.concept.classes

    @property
    def resource_type(self) -> str:
        return self.source.split("/", 1)[0]

    @property
    def taken(self) -> bool:
        return self.status not in NOT_TAKEN

    @property
    def daily_mg(self) -> float | None:
        return self.dose.mg_per_day

    def active_on(self, on: date) -> bool | None:
        """Whether the drug was being taken on ``on``; None when the record cannot say."""
        if not self.taken:
            return False
        if self.start is None:
            return None
        if on < self.start:
            return False
        if self.end is not None:
            return on <= self.end
        if self.status == "on-hold":
            return None
        return True if self.ongoing else None


@dataclass(frozen=True, slots=True)
class Exposures:
    """The exposures of a record, and the drug resources that could not be read (for "needs review")."""

    items: tuple[Exposure, ...]
    unresolved: tuple[tuple[str, str], ...] = ()  # (source, reason)

    def of_class(self, class_id: str) -> tuple[Exposure, ...]:
        return tuple(e for e in self.items if class_id in e.concept.classes)


# --- dates ----------------------------------------------------------------------------------------------------


def _period(p: Any) -> tuple[date | None, date | None]:
    if not isinstance(p, Mapping):
        return None, None
    return fhir_date(p.get("start")), fhir_date(p.get("end"), end=True)


def _duration_days(duration: Any) -> float | None:
    if not isinstance(duration, Mapping) or not isinstance(duration.get("value"), int | float):
        return None
    seconds = tables().period_days.get(duration.get("code") or duration.get("unit") or "")
    return duration["value"] * seconds if seconds is not None else None


def _bounds(dosage: Mapping[str, Any]) -> tuple[date | None, date | None] | None:
    """A dosage step's own ``timing.repeat.boundsPeriod`` (or start + ``boundsDuration``), if it has one."""
    repeat = ((dosage.get("timing") or {}).get("repeat") or {}) if isinstance(dosage, Mapping) else {}
    if "boundsPeriod" in repeat:
        return _period(repeat["boundsPeriod"])
    if "boundsDuration" in repeat:
        return None, None
    return None


# --- the product ----------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Product:
    text: str = ""
    ingredients: list[tuple[Concept, Strength | None]] = field(default_factory=list)
    n_active: int = 1  # active ingredients of the product (a combination has more than one)
    problem: str | None = None
    combination: set[str] = field(default_factory=set)  # concept ids of the whole combination product
    strengths_text: str = ""
    route: str | None = None  # the route the product's dose form implies (RxNorm "Oral Tablet" -> oral)
    basis: str = ""  # how the ingredient was read when no code said it ("read from the product name ...")


def _cc_text(cc: Mapping[str, Any] | None) -> str:
    if not isinstance(cc, Mapping):
        return ""
    if isinstance(cc.get("text"), str):
        return cc["text"]
    for coding in cc.get("coding") or ():
        if isinstance(coding, Mapping) and coding.get("display"):
            return str(coding["display"])
    return ""


def _names(concept: Concept) -> set[str]:
    names = {concept.display.lower(), concept.id.replace("-", " ")}
    names.update(c.display.lower() for c in concept.codes if c.display)
    return {n for n in names if n}


def _text_strength(concept: Concept, found: list[tuple[str, Strength]], n_concepts: int) -> Strength | None:
    if not found:
        return None
    names = _names(concept)
    for name, strength in found:
        if name and any(n in name or name in n for n in names):
            return strength
    return found[0][1] if n_concepts == 1 and len(found) == 1 else None


_PRODUCTS: dict[tuple[int, bytes], tuple[Classifier, _Product]] = {}  # the catalog kept: its id stays its own


def _cached(key: tuple[int, bytes], catalog: Classifier) -> _Product | None:
    hit = _PRODUCTS.get(key)
    return hit[1] if hit is not None and hit[0] is catalog else None


def _keep(key: tuple[int, bytes], catalog: Classifier, product: _Product) -> _Product:
    if len(_PRODUCTS) < 50_000:
        _PRODUCTS[key] = (catalog, product)
    return product


def product_problem(resource: Mapping[str, Any], record: Resolver, catalog: Classifier) -> str | None:
    """Why a drug resource's product cannot be read as catalog ingredients ("medication 'x' not in the catalog"),
    or None when it can: the drug records ``read_exposures`` lists as unresolved, without reading their doses."""
    return _product(resource, record, catalog).problem


def _product(resource: Mapping[str, Any], record: Resolver, catalog: Classifier) -> _Product:
    """What a drug resource gives: its ingredient concepts with their strengths. A coded product, or a
    Medication that references nothing outside itself, is worked out once per catalog: a population repeats a
    few hundred products."""
    cc = resource.get("medicationCodeableConcept")
    if isinstance(cc, Mapping):
        key = (id(catalog), orjson.dumps(cc))
        return _cached(key, catalog) or _keep(key, catalog, _read_product(cc, None, record, catalog, resource))
    ref = resource.get("medicationReference")
    medication = record.resolve(ref, within=dict(resource)) if ref else None
    if medication is None:
        what = (ref or {}).get("reference") if isinstance(ref, Mapping) else ref
        return _Product(problem=f"medication {what!r} not in the source" if what else "no medication")
    ingredients = medication.get("ingredient")
    if isinstance(ingredients, list) and any(isinstance(i, Mapping) and "itemReference" in i for i in ingredients):
        return _read_product(medication.get("code"), medication, record, catalog, resource)
    try:
        key = (id(catalog), b"M" + orjson.dumps(medication))
    except TypeError:
        return _read_product(medication.get("code"), medication, record, catalog, resource)
    return _cached(key, catalog) or _keep(key, catalog, _read_product(medication.get("code"), medication, record,
                                                                       catalog, resource))


def _item_concepts(ingredient: Mapping[str, Any], medication: Mapping[str, Any], record: Resolver,
                   catalog: Classifier, holder: Mapping[str, Any] | None) -> tuple[tuple[Concept, ...], str]:
    """The concepts of one ``Medication.ingredient`` item (coded, or an itemReference to a Medication or
    Substance, contained in the Medication or in the resource holding it), and how they were read. An item
    with no code that maps may name the substance ("tofacitinib citrate"): matched by exact ingredient name."""
    item = ingredient.get("itemCodeableConcept")
    if not isinstance(item, Mapping) and ingredient.get("itemReference"):
        target = record.resolve(ingredient["itemReference"], within=dict(medication))
        if target is None and holder is not None:
            target = record.resolve(ingredient["itemReference"], within=dict(holder))
        item = (target or {}).get("code")
    if not isinstance(item, Mapping):
        return (), ""
    concepts = catalog.classify(item)
    if concepts:
        return concepts, ""
    for name in (item.get("text"), *((c or {}).get("display") for c in item.get("coding") or ()
                                     if isinstance(c, Mapping))):
        concept = ingredient_concept(catalog, name)
        if concept is not None:
            return (concept,), f"ingredient named {name!r} in the Medication"
    return (), ""


def _product_names(cc: Any, catalog: Classifier) -> list[str]:
    """Names a product may be read from, most trusted first: the catalog's display of each of its codes,
    then each coding's display, then its text."""
    if not isinstance(cc, Mapping):
        return []
    codings = [c for c in cc.get("coding") or () if isinstance(c, Mapping)]
    names = [catalog_display(catalog, c.get("system"), c.get("code")) for c in codings]
    names += [c.get("display") for c in codings]
    names.append(cc.get("text"))
    return [n for n in dict.fromkeys(names) if isinstance(n, str) and n]


def _read_product(cc: Any, medication: Mapping[str, Any] | None, record: Resolver,
                  catalog: Classifier, holder: Mapping[str, Any] | None = None) -> _Product:
    product = _Product(text=_cc_text(cc))
    seen: set[str] = set()
    raw_ingredients = [i for i in (medication or {}).get("ingredient") or () if isinstance(i, Mapping)]
    active = [i for i in raw_ingredients if i.get("isActive", True) is not False]
    product.n_active = max(1, len(active))
    for ingredient in active:
        concepts, basis = _item_concepts(ingredient, medication or {}, record, catalog, holder)
        strength = strength_from_ratio(ingredient.get("strength"))
        for concept in concepts:
            if concept.id not in seen:
                seen.add(concept.id)
                product.ingredients.append((concept, strength))
        if concepts and basis and not product.basis:
            product.basis = basis
    read = next((r for r in (read_name(catalog, n) for n in _product_names(cc, catalog)) if r is not None), None)
    if read is not None:
        product.route = read.name.route
    by_concept = {concept.id: component for concept, component in read.ingredients} if read else {}
    # an ingredient stated without its strength takes it from the product's name
    product.ingredients = [(c, s if s is not None or c.id not in by_concept else by_concept[c.id].strength)
                           for c, s in product.ingredients]
    product_concepts = [c for c in catalog.classify(cc) if c.id not in seen]
    if product_concepts:
        _add_coded(product, product_concepts, read, cc, seen, bool(active))
    elif not product.ingredients and read is not None and read.ingredients:
        # no code maps and no ingredient is stated: the product's RxNorm name says what it is
        product.basis = f"read from the product name {read.name.text!r}"
        product.n_active = len(read.name.components)
        _add_named(product, read, seen)
    if not product.ingredients:
        product.problem = f"medication {product.text!r} not in the catalog" if product.text else "medication not coded"
    return product


def _add_named(product: _Product, read: ReadName, seen: set[str]) -> None:
    """The ingredients of a parsed name, each with its strength; the whole combination as a concept too."""
    for concept, component in read.ingredients:
        if concept.id not in seen:
            seen.add(concept.id)
            product.ingredients.append((concept, component.strength))
    if read.combination is not None and read.combination.id not in seen:
        seen.add(read.combination.id)
        product.combination.add(read.combination.id)
        product.ingredients.append((read.combination, None))
    product.strengths_text = _strengths_text(read)


def _strengths_text(read: ReadName) -> str:
    return " + ".join(f"{c.substance} {c.amount:g} {c.unit}" for c in read.name.components)


def _add_coded(product: _Product, concepts: list[Concept], read: ReadName | None, cc: Any, seen: set[str],
               stated: bool) -> None:
    """Concepts the product's own codes map to. Its RxNorm name (the catalog's, else the coding's) gives their
    strengths, and splits a combination concept ("sulfamethoxazole / trimethoprim") into its ingredients, but
    only where the name agrees with the codes."""
    ids = {c.id for c in concepts}
    agrees = read is not None and (any(c.id in ids for c, _ in read.ingredients)
                                   or (read.combination is not None and read.combination.id in ids))
    if read is not None and agrees:
        if not stated:
            product.n_active = max(len(read.name.components), 1)
        by_concept = {c.id: comp for c, comp in read.ingredients}
        if read.combination is not None and read.combination.id in ids and not stated:
            for concept, component in read.ingredients:  # the combination's ingredients, with their strengths
                if concept.id not in seen:
                    seen.add(concept.id)
                    product.ingredients.append((concept, component.strength))
        for concept in concepts:
            seen.add(concept.id)
            if concept.id in by_concept:
                product.ingredients.append((concept, by_concept[concept.id].strength))
            else:
                product.combination.add(concept.id)
                product.ingredients.append((concept, None))
        product.strengths_text = _strengths_text(read)
        return
    texts = [product.text, *(str(c.get("display") or "") for c in (cc or {}).get("coding") or ()
                             if isinstance(c, Mapping))]
    found = next((f for f in (strengths_from_text(t) for t in texts) if f), [])
    if not stated:
        product.n_active = max(len(concepts), len(found), 1)
    for concept in concepts:
        seen.add(concept.id)
        if product.n_active > 1:  # "tmp-smx": its mg are those of each ingredient, not one number
            product.combination.add(concept.id)
            product.ingredients.append((concept, None))
        else:
            product.ingredients.append((concept, _text_strength(concept, found, len(concepts))))
    product.strengths_text = " + ".join(f"{n} {s.mg:g} mg" for n, s in found)


# --- exposures ------------------------------------------------------------------------------------------------


def _dosages(resource: Mapping[str, Any]) -> tuple[list[Mapping[str, Any]], bool]:
    """The resource's dosage entries and whether they are one administration (MedicationAdministration)."""
    if resource.get("resourceType") == "MedicationAdministration":
        d = resource.get("dosage")
        return ([d] if isinstance(d, Mapping) else []), True
    key = "dosageInstruction" if resource.get("resourceType") == "MedicationRequest" else "dosage"
    return [d for d in resource.get(key) or () if isinstance(d, Mapping)], False


def _steps(dosages: list[Mapping[str, Any]]) -> list[list[Mapping[str, Any]]]:
    """Dosages grouped by ``sequence``: one group is taken together (summed), groups follow each other."""
    if not dosages:
        return [[]]
    groups: dict[Any, list[Mapping[str, Any]]] = {}
    for d in dosages:
        groups.setdefault(d.get("sequence"), []).append(d)
    return [groups[k] for k in sorted(groups, key=lambda k: (k is None, k if isinstance(k, int) else 0))]


def _resource_dates(resource: Mapping[str, Any], status: str | None) -> tuple[date | None, date | None]:
    rtype = resource.get("resourceType")
    if rtype == "MedicationRequest":
        dispense = resource.get("dispenseRequest") or {}
        start, end = _period(dispense.get("validityPeriod"))
        return start or fhir_date(resource.get("authoredOn")), end
    if "effectivePeriod" in resource:
        start, end = _period(resource["effectivePeriod"])
        if rtype == "MedicationAdministration" and end is None and status == "completed":
            end = start
        return start, end
    when = fhir_date(resource.get("effectiveDateTime"))
    if rtype == "MedicationAdministration" or status in ("completed", "stopped"):
        return when, when if rtype == "MedicationAdministration" else None
    return when, None


_DOSES: dict[tuple[bytes, str, bool, bool], DailyDose] = {}


def _daily_dose(step: list[Mapping[str, Any]], strength: Strength | None, single: bool, mass_ok: bool) -> DailyDose:
    """``daily_dose`` of a dosage step, worked out once per distinct step and strength: a population repeats a few
    hundred dosages. Not cached: a step that is not plain JSON, or holds a null (NaN would write as one too)."""
    try:
        text = orjson.dumps(step)
    except TypeError:
        text = b"null"
    if b"null" in text:
        return daily_dose(step, strength, single=single, mass_dose_ok=mass_ok)
    key = (text, repr(strength), single, mass_ok)  # repr: 5 and 5.0 mg stay apart, as they print apart
    hit = _DOSES.get(key)
    if hit is None:
        hit = daily_dose(step, strength, single=single, mass_dose_ok=mass_ok)
        if len(_DOSES) < 50_000:
            _DOSES[key] = hit
    return hit


def exposures_of(resource: Mapping[str, Any], record: Resolver, catalog: Classifier) -> Exposures:
    """The exposures one drug resource gives (one per ingredient concept and dosage step)."""
    rtype = resource.get("resourceType")
    source = f"{rtype}/{resource.get('id')}"
    product = _product(resource, record, catalog)
    if product.problem:
        return Exposures((), ((source, product.problem),))
    status = resource.get("status")
    start, end = _resource_dates(resource, status)
    dosages, single = _dosages(resource)
    out: list[Exposure] = []
    for step in _steps(dosages):
        bounds = _bounds(step[0]) if step else None
        s_start, s_end = (bounds[0] or start, bounds[1]) if bounds else (start, end)
        if bounds is not None and s_end is None:
            duration = _duration_days(((step[0].get("timing") or {}).get("repeat") or {}).get("boundsDuration"))
            if duration is not None and s_start is not None:
                s_end = s_start + timedelta(days=max(duration - 1, 0))
        route = next((r for r in (route_of(d.get("route")) for d in step) if r), None) or product.route
        for concept, strength in product.ingredients:
            if not step:
                dose = DailyDose(None, "no dosage")
            elif concept.id in product.combination:
                per = f" ({product.strengths_text} per unit)" if product.strengths_text else ""
                dose = DailyDose(None, f"combination product{per}: daily mg is given per ingredient")
            else:
                dose = _daily_dose(step, strength, single, product.n_active == 1)
            out.append(Exposure(concept, source, status, route, s_start, s_end,
                                s_end is None and status in ONGOING, dose, product.text, product.basis))
    return Exposures(tuple(out))


def read_exposures(record: Resolver, catalog: Classifier, types: Sequence[str] = DRUG_TYPES) -> Exposures:
    """Every exposure of a record, from the drug resource types it holds."""
    items: list[Exposure] = []
    unresolved: list[tuple[str, str]] = []
    for rtype in types:
        for resource in record.of(rtype):
            found = exposures_of(resource, record, catalog)
            items.extend(found.items)
            unresolved.extend(found.unresolved)
    if unresolved:
        log.debug("%d drug resources not read: %s", len(unresolved), unresolved[:3])
    return Exposures(tuple(items), tuple(unresolved))


# --- glucocorticoid dose --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GlucocorticoidPart:
    source: str
    concept_id: str
    mg_per_day: float
    factor: float
    peq_mg_per_day: float  # mg_per_day x factor


@dataclass(frozen=True, slots=True)
class GlucocorticoidDose:
    """The prednisone-equivalent (PEQ) mg/day of the systemic glucocorticoids active on ``on``.

    ``peq_mg_day`` sums ``parts``; it is a lower bound when ``complete`` is False (``missing`` says why for
    each exposure left out, ``uncertain`` lists exposures that may or may not be active on that date).
    """

    on: date
    peq_mg_day: float
    mg_per_kg_day: float | None
    complete: bool
    parts: tuple[GlucocorticoidPart, ...] = ()
    missing: tuple[tuple[str, str], ...] = ()
    uncertain: tuple[str, ...] = ()
    not_systemic: tuple[str, ...] = ()
    superseded: tuple[str, ...] = ()  # active but not counted: the same drug is better evidenced that day

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(p.source for p in self.parts)


def mg_per_kg_day(peq_mg_day: float | None, weight_kg: float | None) -> float | None:
    """mg/kg/day = PEQ mg/day / body weight in kg (clinical.md §4.7); None without a usable weight."""
    if peq_mg_day is None or weight_kg is None or weight_kg <= 0:
        return None
    return peq_mg_day / weight_kg


def current_glucocorticoid_dose(
    exposures: Iterable[Exposure], on: date, weight_kg: float | None = None
) -> GlucocorticoidDose:
    """PEQ mg/day (and mg/kg/day given ``weight_kg``) of the glucocorticoids active on ``on``.

    Per drug, administrations on that date beat statements, which beat orders, so one dose recorded three ways
    counts once; within the chosen resource type concurrent exposures add up (10 mg AM + 5 mg PM).
    """
    systemic = tables().systemic_routes
    missing: list[tuple[str, str]] = []
    uncertain: list[str] = []
    not_systemic: list[str] = []
    by_drug: dict[str, list[Exposure]] = {}
    for e in exposures:
        if GLUCOCORTICOID not in e.concept.classes:
            continue
        active = e.active_on(on)
        if active is False:
            continue
        if active is None:
            uncertain.append(e.source)
            continue
        if e.route is not None and e.route not in systemic:
            not_systemic.append(e.source)
            continue
        by_drug.setdefault(e.concept.id, []).append(e)
    parts: list[GlucocorticoidPart] = []
    superseded: list[str] = []
    for drug in by_drug.values():
        dosed = [e for e in drug if e.dose.mg_per_day is not None]
        if not dosed:
            missing.extend((e.source, e.dose.reason or "no daily dose") for e in drug)
            continue
        best = min(_RANK.get(e.resource_type, 9) for e in dosed)
        for e in drug:
            if e.dose.mg_per_day is None or _RANK.get(e.resource_type, 9) != best:
                superseded.append(e.source)
                continue
            factor = e.concept.prednisone_factor
            if factor is None:
                missing.append((e.source, f"no prednisone-equivalent factor for {e.concept.display} "
                                          "(clinical.md §4.7 lists none)"))
                continue
            mg = e.dose.mg_per_day
            parts.append(GlucocorticoidPart(e.source, e.concept.id, mg, factor, mg * factor))
    total = sum(p.peq_mg_per_day for p in parts)
    return GlucocorticoidDose(on, total, mg_per_kg_day(total, weight_kg), not missing and not uncertain,
                              tuple(parts), tuple(missing), tuple(uncertain), tuple(not_systemic), tuple(superseded))


@dataclass(frozen=True, slots=True)
class DoseSpan:
    """Days ``first``..``last`` over which the glucocorticoid dose stays ``dose`` (dated ``first``)."""

    first: date
    last: date
    dose: GlucocorticoidDose

    def on(self, day: date) -> GlucocorticoidDose:
        """The dose dated ``day`` (a day of the span); built directly: ``dataclasses.replace`` is slow on a slotted
        class."""
        if day == self.first:
            return self.dose
        d = self.dose
        return GlucocorticoidDose(day, d.peq_mg_day, d.mg_per_kg_day, d.complete, d.parts, d.missing, d.uncertain,
                                  d.not_systemic, d.superseded)


def glucocorticoid_spans(
    exposures: Iterable[Exposure], first: date, last: date, weight_kg: float | None = None
) -> list[DoseSpan]:
    """``current_glucocorticoid_dose`` over ``[first, last]`` as the spans over which it stays the same, in date
    order (none when ``first`` is after ``last``).

    Whether an exposure is active changes only on its start date and the day after its end, so the dose is
    worked out on ``first`` and on those days only: a span runs from one of them to the day before the next.
    Two spans in a row may give the same dose (a change day where nothing systemic changed).
    """
    exposures = [e for e in exposures if GLUCOCORTICOID in e.concept.classes]
    if first > last:
        return []
    changes = {first}
    for e in exposures:
        for day in (e.start, e.end + timedelta(days=1) if e.end is not None else None):
            if day is not None and first < day <= last:
                changes.add(day)
    days = sorted(changes)
    ends = [d - timedelta(days=1) for d in days[1:]] + [last]
    return [DoseSpan(day, end, current_glucocorticoid_dose(exposures, day, weight_kg))
            for day, end in zip(days, ends, strict=True)]


def glucocorticoid_doses(
    exposures: Iterable[Exposure], first: date, last: date, weight_kg: float | None = None
) -> dict[date, GlucocorticoidDose]:
    """``current_glucocorticoid_dose`` for every day of ``[first, last]``, from ``glucocorticoid_spans`` (each
    day's dose carried, with its date, from the day its span starts)."""
    out: dict[date, GlucocorticoidDose] = {}
    for span in glucocorticoid_spans(exposures, first, last, weight_kg):
        day = span.first
        while day <= span.last:
            out[day] = span.on(day)
            day += timedelta(days=1)
    return out
