"""Facts from one patient record, with the resources they came from: the building blocks of every criterion.

``Facts`` classifies each Observation, Condition and AllergyIntolerance once (through the concept catalog, so
site-mapped local codes count like LOINC or SNOMED) and reads drug exposures once (``terminology.exposure``).
Criteria then ask: the latest value of a concept in a window (converted into the concept's canonical unit),
the qualitative verdict of a result, the conditions of a concept or class and their dates, the exposures of a
drug class in a window. Nothing here decides a criterion.

Records whose codes map to no concept (and are not on the site's ``ignore`` list) are kept as ``Unmapped``:
``possible`` finds those whose code display or text names what a criterion looks for (the name index,
``terminology.names``), so that no absence is concluded over them; ``UnmappedTally`` counts them for the run's
summary. Names are matched per distinct text, never per resource.
"""

from __future__ import annotations

import calendar
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import cached_property
from typing import Any

import orjson

from fhir_adapter.record.dates import date_problem
from fhir_adapter.record.dates import fhir_date as to_date
from fhir_adapter.record.draws import draw_key
from fhir_adapter.record.patient_record import PatientRecord
from fhir_adapter.terminology.catalog import Catalog, cc_texts
from fhir_adapter.terminology.concept import Concept
from fhir_adapter.terminology.exposure import DRUG_TYPES, NOT_TAKEN, Exposure, Exposures, read_exposures
from fhir_adapter.terminology.names import Named
from fhir_adapter.terminology.qualitative import ComponentRule, Verdict, read_components, read_verdict
from fhir_adapter.terminology.units import Converted, cannot_be, factor_to_canonical, quantity_of, quantity_to_canonical

log = logging.getLogger("fhir_adapter.studies")
_CODE_CACHE: dict[int, dict[tuple[Any, ...], tuple[tuple[Concept, ...], str | None]]] = {}
ACTIVE_CLINICAL = frozenset({"active", "recurrence", "relapse"})


def encounter_reasons(record: Any, encounter: Mapping[str, Any]) -> list[Any]:
    """The CodeableConcepts an Encounter gives as its reasons: ``reasonCode``, and the codes of the Conditions
    its ``reasonReference`` and ``diagnosis`` point at (resolved in the record)."""
    reasons = list(encounter.get("reasonCode") or ())
    links = [*(encounter.get("reasonReference") or ()),
             *((d or {}).get("condition") for d in encounter.get("diagnosis") or ())]
    for link in links:
        target = record.resolve(link, within=encounter) if link else None
        if target:
            reasons.append(target.get("code"))
    return reasons


def ref(resource: Mapping[str, Any]) -> str:
    return f"{resource.get('resourceType')}/{resource.get('id')}"


def add_years(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February
        return day.replace(year=day.year + years, day=28)


def add_months(day: date, months: int) -> date:
    m = day.month - 1 + months
    year, month = day.year + m // 12, m % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def observation_date_problem(obs: Mapping[str, Any]) -> str:
    """Why an Observation has no readable date: "invalid date '2026-02-30'" or "no effective date"."""
    period = obs.get("effectivePeriod")
    candidates = [obs.get(k) for k in ("effectiveDateTime", "effectiveInstant")]
    if isinstance(period, Mapping):
        candidates += [period.get("end"), period.get("start")]
    candidates.append(obs.get("issued"))
    for value in candidates:
        if value is not None:
            problem = date_problem(value)
            if problem:
                return problem
    return "no effective date"


def observation_date(obs: Mapping[str, Any]) -> date | None:
    for key in ("effectiveDateTime", "effectiveInstant"):
        if key in obs:
            return to_date(obs[key])
    period = obs.get("effectivePeriod")
    if isinstance(period, Mapping):
        return to_date(period.get("end")) or to_date(period.get("start"))
    return to_date(obs.get("issued"))


@dataclass(frozen=True, slots=True)
class ObsFact:
    ref: str
    when: date | None
    resource: dict[str, Any]
    concepts: tuple[Concept, ...]
    default_unit: str | None = None


@dataclass(frozen=True, slots=True)
class Value:
    """A numeric result in its concept's canonical unit (``value`` None when unusable: ``problem`` says why).

    A derived value (``derived`` says how: "derived: 32% of WBC 3.1 x10^9/L (Observation/a, Observation/b) =
    0.99 x10^9/L") comes from ``parts``; ``fact`` is then its first part (for its date)."""

    fact: ObsFact
    converted: Converted
    derived: str | None = None
    parts: tuple[ObsFact, ...] = ()

    @property
    def refs(self) -> list[str]:
        """The resources this value came from (every part of a derived value)."""
        return [p.ref for p in self.parts] if self.parts else [self.fact.ref]

    @property
    def set_aside(self) -> str:
        """"Observation/x set aside: <why>" for an unusable value."""
        return f"{self.fact.ref} set aside: {self.converted.problem or 'no usable value'}"

    @property
    def value(self) -> float | None:
        return self.converted.value

    @property
    def comparator(self) -> str | None:
        return self.converted.comparator

    @property
    def shown(self) -> str:
        c = self.converted
        if c.value is None:
            return f"unusable ({c.problem})"
        shown = f"{c.comparator or ''}{c.value:g} {c.unit or ''}".strip() + f" on {self.fact.when}"
        return f"{shown} ({self.derived})" if self.derived else shown


@dataclass(frozen=True, slots=True)
class ConditionFact:
    ref: str
    concepts: tuple[Concept, ...]
    onset: date | None
    recorded: date | None
    abatement: date | None
    clinical: str | None
    text: str
    resource: dict[str, Any]
    # derived from ``concepts`` once (``conditions_of`` asks ~17 times a patient), never passed in
    concept_ids: frozenset[str] = field(init=False, repr=False, compare=False)
    class_ids: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "concept_ids", frozenset(c.id for c in self.concepts))
        object.__setattr__(self, "class_ids", frozenset(k for c in self.concepts for k in c.classes))

    @property
    def start(self) -> date | None:
        return self.onset or self.recorded

    def ids(self) -> frozenset[str]:
        return self.concept_ids

    def classes(self) -> frozenset[str]:
        return self.class_ids

    def date_problems(self) -> list[str]:
        """The dates of this Condition that cannot be read ("invalid date '2025-02-30' (abatementDateTime)")."""
        r = self.resource
        found = [(r.get(k), k) for k in ("onsetDateTime", "abatementDateTime", "recordedDate")]
        for key, part in (("onsetPeriod", "start"), ("abatementPeriod", "end")):
            if isinstance(r.get(key), Mapping):
                found.append((r[key].get(part), f"{key}.{part}"))
        return [f"{date_problem(v)} ({k})" for v, k in found if v is not None and date_problem(v)]

    def active_on(self, day: date) -> bool:
        """Active on ``day``: begun by then, not abated before it, clinical status not inactive/resolved."""
        if self.start is not None and self.start > day:
            return False
        if self.abatement is not None and self.abatement < day:
            return False
        return self.clinical is None or self.clinical in ACTIVE_CLINICAL


def _cc_text(cc: Any) -> str:
    """A CodeableConcept's text, else its first display."""
    if not isinstance(cc, Mapping):
        return ""
    if isinstance(cc.get("text"), str) and cc["text"]:
        return cc["text"]
    return next((str(c["display"]) for c in cc.get("coding") or () if isinstance(c, Mapping) and c.get("display")), "")


def _status_code(cc: Any) -> str | None:
    if isinstance(cc, Mapping):
        for c in cc.get("coding") or ():
            if isinstance(c, Mapping) and c.get("code"):
                return str(c["code"])
    return None


def _pretty_unit(unit: str | None) -> str:
    """"\u00d710^9/L" for UCUM "10*9/L" (as evidence reads); other units as they are."""
    if unit and unit.startswith("10*"):
        return "\u00d710^" + unit[3:]
    return unit or ""


@dataclass(frozen=True, slots=True)
class Unmapped:
    """A record (or an Encounter's reason) whose codes map to no concept and are not on the site's ignore list.
    ``system``/``code``/``display``: its first coding (``code`` "" when it has only a text); ``texts``: its text and
    code displays, where names are looked for."""

    ref: str
    system: str
    code: str
    display: str
    texts: tuple[str, ...]
    when: date | None = None
    resource: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def resource_type(self) -> str:
        return self.ref.split("/", 1)[0]

    @property
    def key(self) -> tuple[str, str]:
        """(system, code), or ("", text) for a record with only a text."""
        return (self.system, self.code) if self.code else ("", self.display)

    def shown(self) -> str:
        said = f" '{self.display}'" if self.display else ""
        return f"{self.system}|{self.code}{said}" if self.code else f"text '{self.display}'"


def unmapped_of(ref_: str, cc: Any, when: date | None = None, resource: Mapping[str, Any] | None = None,
                extra: tuple[str, ...] = ()) -> Unmapped | None:
    """An ``Unmapped`` for a CodeableConcept that maps to nothing (None when it holds neither code nor text)."""
    texts = cc_texts(cc) + tuple(t for t in extra if t)
    codings = [c for c in cc.get("coding") or () if isinstance(c, Mapping)] if isinstance(cc, Mapping) else []
    first = next((c for c in codings if isinstance(c.get("code"), str) and c["code"]), None)
    if first is not None:
        display = first.get("display") if isinstance(first.get("display"), str) else ""
        return Unmapped(ref_, str(first.get("system") or ""), first["code"], display or (texts[0] if texts else ""),
                        texts, when, resource or {})
    if texts:
        return Unmapped(ref_, "", "", texts[0], texts, when, resource or {})
    return None


@dataclass(frozen=True, slots=True)
class CodeFacts:
    """What an unmapped CodeableConcept gives: its first coding (or text), its texts, and what they name."""

    system: str
    code: str
    display: str
    texts: tuple[str, ...]
    named: Named


_CODE_FACTS: dict[tuple[int, bytes, tuple[str, ...]], tuple[Any, CodeFacts | None]] = {}


def code_facts(catalog: Catalog, cc: Any, extra: tuple[str, ...] = ()) -> CodeFacts | None:
    """``CodeFacts`` of a CodeableConcept that maps to nothing, or None when the site ignores its code or it holds
    neither code nor text. Worked out once per distinct CodeableConcept and catalog (a population repeats a few
    hundred local codes): the name index is never asked per resource."""
    try:
        key: tuple[int, bytes, tuple[str, ...]] | None = (id(catalog), orjson.dumps(cc), extra)
    except TypeError:  # not JSON (a key that is not a string): worked out, not cached
        key = None
    hit = _CODE_FACTS.get(key) if key is not None else None
    if hit is not None and hit[0] is catalog:
        return hit[1]
    facts = None
    if not catalog.is_ignored(cc):
        u = unmapped_of("", cc, extra=extra)
        if u is not None:
            facts = CodeFacts(u.system, u.code, u.display, u.texts, catalog.names.named_any(u.texts))
    if key is not None and len(_CODE_FACTS) < 100_000:
        _CODE_FACTS[key] = (catalog, facts)
    return facts


def drug_code(record: Any, resource: Mapping[str, Any]) -> tuple[Any, tuple[str, ...]]:
    """A drug resource's product CodeableConcept (inline, or its Medication's code) and the Medication's
    ingredient texts."""
    cc = resource.get("medicationCodeableConcept")
    if isinstance(cc, Mapping):
        return cc, ()
    link = resource.get("medicationReference")
    medication = record.resolve(link, within=dict(resource)) if link else None
    if not isinstance(medication, Mapping):
        return None, ()
    extra = []
    for ingredient in medication.get("ingredient") or ():
        if isinstance(ingredient, Mapping):
            extra += cc_texts(ingredient.get("itemCodeableConcept"))
    return medication.get("code"), tuple(extra)


def drug_routes(resource: Mapping[str, Any]) -> set[str]:
    """The routes ("oral", "intravenous", ...) a drug resource's dosages state (empty when none does)."""
    from fhir_adapter.terminology.dosage import route_of

    dosage = resource.get("dosage") if resource.get("resourceType") != "MedicationRequest" else \
        resource.get("dosageInstruction")
    dosages = [dosage] if isinstance(dosage, Mapping) else dosage if isinstance(dosage, list) else []
    return {r for r in (route_of(d.get("route")) for d in dosages if isinstance(d, Mapping)) if r}


class HorizonError(RuntimeError):
    """A rule asked for Observations older than the record holds: the population screen skipped them before
    parsing (the study file's ``observation_lookback`` is wrong for that rule)."""


class Facts:
    """Everything the criteria read from one record, classified once. ``as_of`` is the screening date S.

    ``horizon`` (concept id -> first date read) is set when the record was read without the Observations no
    criterion reaches (``studies.lookback``): asking for a concept's Observations from before its horizon raises
    ``HorizonError`` instead of answering from a history the record does not hold.
    """

    def __init__(self, record: PatientRecord, catalog: Catalog, as_of: date, randomization: date,
                 horizon: Mapping[str, date] | None = None):
        self.record = record
        self.catalog = catalog
        self.as_of = as_of
        self.randomization = randomization
        self.horizon = horizon
        self._unmapped_obs: list[dict[str, Any]] = []
        # (concept ids, start, end, date of the newest result found) of each Observation query while a rule runs
        self._asked: list[tuple[tuple[str, ...], date | None, date, date | None]] | None = None

    # --- observations -------------------------------------------------------------------------------------

    def _classify_code(self, code: Any) -> tuple[tuple[Concept, ...], str | None]:
        """The concepts (and a site's default unit) of an Observation.code, cached per catalog by its codings:
        a population repeats a few hundred lab codes millions of times."""
        codings = (code or {}).get("coding") if isinstance(code, Mapping) else None
        if not codings:
            return (), None
        try:
            key = tuple((c.get("system"), c.get("code")) for c in codings)
        except AttributeError:
            return (), None
        cache = _CODE_CACHE.setdefault(id(self.catalog), {})
        hit = cache.get(key)
        if hit is None:
            concepts = self.catalog.classify(code)
            unit = next((u for u in (self.catalog.local_unit(s, c) for s, c in key if isinstance(s, str)
                                     and isinstance(c, str)) if u), None) if concepts else None
            hit = (concepts, unit)
            if len(cache) < 100_000:
                cache[key] = hit
        return hit

    @cached_property
    def _observations(self) -> dict[str, list[ObsFact]]:
        index: dict[str, list[ObsFact]] = {}
        unmapped = self._unmapped_obs
        for obs in self.record.of("Observation"):
            concepts, default_unit = self._classify_code(obs.get("code"))
            if not concepts:
                unmapped.append(obs)
                continue
            fact = ObsFact(ref(obs), observation_date(obs), obs, concepts, default_unit)
            for concept in concepts:
                index.setdefault(concept.id, []).append(fact)
        for facts in index.values():
            facts.sort(key=lambda f: (f.when or date.min, f.ref), reverse=True)
        return index

    def observations(self, concept_ids: Iterable[str], start: date | None = None,
                     end: date | None = None) -> list[ObsFact]:
        """Observations of any of the concepts dated in [start, end] (end defaults to S), newest first."""
        end = end or self.as_of
        if self.horizon or self._asked is not None:
            concept_ids = list(concept_ids)
        if self.horizon:
            self._check_horizon(concept_ids, start)  # type: ignore[arg-type]
        if isinstance(concept_ids, (list, tuple)) and len(concept_ids) == 1:  # one concept's list is sorted already
            found = [f for f in self._observations.get(concept_ids[0], ())
                     if f.when is not None and f.when <= end and (start is None or f.when >= start)]
        else:
            seen: dict[str, ObsFact] = {}
            for cid in concept_ids:
                for f in self._observations.get(cid, ()):
                    if f.when is None or f.when > end or (start is not None and f.when < start):
                        continue
                    seen.setdefault(f.ref, f)
            found = sorted(seen.values(), key=lambda f: (f.when or date.min, f.ref), reverse=True)
        if self._asked is not None:
            self._asked.append((tuple(concept_ids), start, end, found[0].when if found else None))
        return found

    def _check_horizon(self, concept_ids: Iterable[str], start: date | None) -> None:
        assert self.horizon is not None
        for cid in concept_ids:
            first = self.horizon.get(cid)
            if first is not None and (start is None or start < first):
                raise HorizonError(f"{cid} results from {start or 'any date'} asked for, but those before {first} "
                                   "were not read (study file: observation_lookback)")

    def read_from(self, concept_ids: Iterable[str]) -> date | None:
        """The first date from which the record holds every Observation of these concepts (None: all of them)."""
        if not self.horizon:
            return None
        dates = [d for d in (self.horizon.get(c) for c in concept_ids) if d is not None]
        return max(dates) if dates else None

    def window(self, days: int | None) -> date | None:
        """The start of a look-back of ``days`` before S (None: any time)."""
        return None if days is None else self.as_of - timedelta(days=days)

    def value(self, fact: ObsFact, concept_id: str) -> Value:
        concept = self.catalog.concept(concept_id)
        return Value(fact, quantity_of(fact.resource, concept, fact.default_unit))

    def values(self, concept_ids: Iterable[str], start: date | None = None, end: date | None = None) -> list[Value]:
        """Numeric results (newest first), each converted into the canonical unit of the concept it maps to."""
        return list(self._values(concept_ids, start, end))

    def _values(self, concept_ids: Iterable[str], start: date | None, end: date | None) -> Iterator[Value]:
        ids = list(concept_ids)
        for f in self.observations(ids, start, end):
            cid = next(c.id for c in f.concepts if c.id in ids)
            yield self.value(f, cid)

    def latest_value(self, concept_ids: Iterable[str], start: date | None = None,
                     end: date | None = None) -> tuple[Value | None, list[Value]]:
        """The newest usable value in the window, and the newer results that could not be used (bad units,
        values that cannot be true).

        Converts results newest first and stops at the first usable one. A concept with a ``derive`` rule and no
        usable result in the window is derived from results of the same draw (``derived_value``)."""
        ids = list(concept_ids)
        unusable: list[Value] = []
        for v in self._values(ids, start, end):
            if v.value is not None:
                return v, unusable
            unusable.append(v)
        for cid in ids:
            derived = self.derived_value(cid, start, end)
            if derived is not None and derived.value is not None:
                return derived, unusable
            if derived is not None:
                unusable.append(derived)
        return None, unusable

    def derived_value(self, concept_id: str, start: date | None = None, end: date | None = None) -> Value | None:
        """The newest value of ``concept_id`` derived by its ``derive`` rule (total x percent / 100) from a
        percentage and a total of the same draw (same Specimen, or no Specimen and the same minute) in the
        window; only exact values (no comparator) whose units convert exactly; None when none can be made."""
        concept = self.catalog.get(concept_id)
        if concept is None or concept.derive is None:
            return None
        pct_id, total_id = concept.derive
        totals = [(draw_key(f.resource), f) for f in self.observations([total_id], start, end)]
        for pf in self.observations([pct_id], start, end):
            key = draw_key(pf.resource)
            if key is None:
                continue
            pct = self.value(pf, pct_id)
            if pct.value is None or pct.comparator or pct.converted.unit != "%":
                continue
            for tkey, tf in totals:
                total = self.value(tf, total_id) if tkey == key else None
                if total is None or total.value is None or total.comparator or total.converted.unit is None:
                    continue
                factor = factor_to_canonical(total.converted.unit, concept)
                if factor is None:
                    continue
                value = round(total.value * pct.value / 100 * factor, 9)
                unit = _pretty_unit(concept.unit)
                how = (f"derived: {pct.value:g}% of {self.catalog.concept(total_id).id.upper()} {total.value:g} "
                       f"{_pretty_unit(total.converted.unit)} ({pf.ref}, {tf.ref}) = {value:g} {unit}")
                problem = cannot_be(value, concept, f"{value:g} {concept.unit}")
                converted = Converted(None if problem else value, concept.unit, factor, problem)
                return Value(pf, converted, how, (pf, tf))
        return None

    def undated(self, concept_ids: Iterable[str], start: date | None = None) -> list[str]:
        """"Observation/x set aside: invalid date '2026-06-31'" for each result of these concepts that no window
        can place (no readable date): named where a criterion reads the concept, never silently dropped.

        With ``start``, a date text that sorts before the window whatever it means ("2026-02-30" for a window
        from 2026-06-02) is left out, as the population path's prefilter skips it unparsed."""
        seen: dict[str, ObsFact] = {}
        first = start.isoformat() if start else ""
        for cid in concept_ids:
            for f in self._observations.get(cid, ()):
                written = f.resource.get("effectiveDateTime", f.resource.get("effectiveInstant"))
                if f.when is None and not (first and isinstance(written, str) and written[:10] < first):
                    seen.setdefault(f.ref, f)
        return [f"{ref} set aside: {observation_date_problem(f.resource)}" for ref, f in sorted(seen.items())]

    def reference_high(self, fact: ObsFact, concept_id: str) -> float | None:
        """``referenceRange.high`` of the same result, in the concept's canonical unit."""
        concept = self.catalog.concept(concept_id)
        for rr in fact.resource.get("referenceRange") or ():
            high = rr.get("high") if isinstance(rr, Mapping) else None
            if isinstance(high, Mapping):
                c = quantity_to_canonical(high, concept, fact.default_unit)
                if c.value is not None:
                    return c.value
        return None

    def reading(self, fact: ObsFact) -> Verdict:
        """positive / negative / indeterminate of a result and how it was read (a quantity against its own
        cut-off or the lab's interpretation: ``qualitative.read_verdict``)."""
        if isinstance(fact.resource.get("valueQuantity"), Mapping):
            for concept in fact.concepts:
                if concept.valid != (None, None):
                    c = quantity_of(fact.resource, concept, fact.default_unit)
                    if c.value is None and c.factor is not None:  # a unit understood, a value that cannot be true
                        return Verdict(None, f"{fact.ref} set aside: {c.problem}", "a value that can be true")
        return read_verdict(fact.resource)

    def verdict(self, fact: ObsFact) -> str | None:
        """positive / negative / indeterminate for a qualitative result; None when the result does not say."""
        return self.reading(fact).verdict

    def results(self, concept_ids: Iterable[str], start: date | None = None,
                end: date | None = None) -> list[tuple[ObsFact, str | None]]:
        """Qualitative verdicts of the concepts' results in the window, newest first."""
        return [(f, self.verdict(f)) for f in self.observations(concept_ids, start, end)]

    def component_reads(self, rule: ComponentRule, start: date | None = None,
                        end: date | None = None) -> tuple[list[tuple[list[ObsFact], Verdict]], list[ObsFact]]:
        """A test read from several numbers (an IGRA), one reading per draw, newest first, and the component
        results that belong to no draw that could be read (left alone: never read from one number).

        A draw is an Observation carrying the components as ``component``, or the component Observations of one
        Specimen (or of one minute when they name none). Tube and Mitogen values not corrected for background
        are read minus the exact Nil of the same draw."""
        role_of = {cid: (role, False) for role, ids in rule.roles.items() for cid in ids}
        role_of |= {cid: (role, True) for role, ids in rule.raw_roles.items() for cid in ids}
        draws: dict[Any, tuple[list[ObsFact], dict[tuple[str, bool], tuple[float, str | None]]]] = {}
        loose: list[ObsFact] = []
        for f in self.observations(list(role_of), start, end):
            cid = next(c.id for c in f.concepts if c.id in role_of)
            key = draw_key(f.resource)
            value = self._component_value(f.resource, cid, rule)
            if key is None or value is None:
                loose.append(f)
                continue
            facts, values = draws.setdefault(key, ([], {}))
            facts.append(f)
            values.setdefault(role_of[cid], value)
        for f in self._panel_observations(start, end):
            values = {}
            for comp in f.resource.get("component") or ():
                if not isinstance(comp, Mapping):
                    continue
                for concept in self.catalog.classify(comp.get("code")):
                    value = self._component_value(comp, concept.id, rule) if concept.id in role_of else None
                    if value is not None:
                        values.setdefault(role_of[concept.id], value)
            if values:
                draws[("panel", f.ref)] = ([f], values)
        out: list[tuple[list[ObsFact], Verdict]] = []
        for facts, values in draws.values():
            minus_nil = {role: v for (role, raw), v in values.items() if not raw}
            nil = minus_nil.get("nil")
            for (role, raw), (v, comparator) in values.items():
                if raw and role not in minus_nil and nil is not None and nil[1] in (None, "="):
                    minus_nil[role] = (round(v - nil[0], 9), comparator)
            if len(minus_nil) < 2:  # one number alone is never read
                loose += facts
                continue
            out.append((facts, read_components(rule, minus_nil)))
        out.sort(key=lambda x: max((f.when or date.min, f.ref) for f in x[0]), reverse=True)
        return out, loose

    def _panel_observations(self, start: date | None, end: date | None) -> list[ObsFact]:
        """Observations carrying components, whatever their own code, in the window, that give no result of
        their own (a panel with the lab's interpretation is read from that, not from its components)."""
        out = []
        for obs in self.record.of("Observation"):
            components = obs.get("component")
            if not isinstance(components, list) or not components or read_verdict(obs).verdict is not None:
                continue
            when = observation_date(obs)
            if when is not None and when <= (end or self.as_of) and (start is None or when >= start):
                out.append(ObsFact(ref(obs), when, obs, self._classify_code(obs.get("code"))[0]))
        return out

    def _component_value(self, holder: Mapping[str, Any], concept_id: str,
                         rule: ComponentRule) -> tuple[float, str | None] | None:
        """A component's value in the rule's unit (an Observation or an Observation.component)."""
        concept = self.catalog.concept(concept_id)
        q = holder.get("valueQuantity")
        if not isinstance(q, Mapping):
            return None
        c = quantity_to_canonical(dict(q), concept)
        if c.value is None or concept.unit != rule.unit:
            return None
        return c.value, c.comparator

    # --- conditions ---------------------------------------------------------------------------------------

    @cached_property
    def conditions(self) -> list[ConditionFact]:
        out = []
        for c in self.record.of("Condition"):
            concepts = self.catalog.classify(c.get("code"))
            onset = to_date(c.get("onsetDateTime")) or to_date((c.get("onsetPeriod") or {}).get("start"))
            abatement = to_date(c.get("abatementDateTime"), end=True) or to_date(
                (c.get("abatementPeriod") or {}).get("end"), end=True)
            out.append(ConditionFact(ref(c), concepts, onset, to_date(c.get("recordedDate")), abatement,
                                     _status_code(c.get("clinicalStatus")), _cc_text(c.get("code")), c))
        return out

    @cached_property
    def _conditions_by_ref(self) -> dict[str, ConditionFact]:
        return {c.ref: c for c in self.conditions}

    def condition_fact(self, resource: Mapping[str, Any]) -> ConditionFact | None:
        """The ``ConditionFact`` of a Condition of the record (mapped or not): its dates and clinical status."""
        return self._conditions_by_ref.get(ref(resource))

    def conditions_of(self, concept_ids: Iterable[str] = (), classes: Iterable[str] = ()) -> list[ConditionFact]:
        """Conditions mapped to any of the concepts or classes and begun by S."""
        ids, cls = set(concept_ids), set(classes)
        return [c for c in self.conditions if (not ids.isdisjoint(c.concept_ids) or not cls.isdisjoint(c.class_ids))
                and (c.start is None or c.start <= self.as_of)]

    # --- drugs and allergies ------------------------------------------------------------------------------

    @cached_property
    def exposures(self) -> Exposures:
        return read_exposures(self.record, self.catalog)

    def holds_drugs(self) -> bool:
        return any(self.record.holds(t) for t in DRUG_TYPES)

    def drug_record_count(self) -> int:
        return sum(len(self.record.of(t)) for t in DRUG_TYPES)

    def exposures_of(self, classes: Iterable[str] = (), concept_ids: Iterable[str] = ()) -> list[Exposure]:
        cls, ids = set(classes), set(concept_ids)
        return [e for e in self.exposures.items
                if e.taken and (not cls.isdisjoint(e.concept.classes) or e.concept.id in ids)]

    @cached_property
    def allergies(self) -> list[tuple[str, tuple[Concept, ...], str, dict[str, Any]]]:
        out = []
        for a in self.record.of("AllergyIntolerance"):
            out.append((ref(a), self.catalog.classify(a.get("code")), _cc_text(a.get("code")), a))
        return out

    # --- records whose codes map to nothing --------------------------------------------------------------

    @cached_property
    def _unmapped_scan(self) -> list[tuple[str, str, CodeFacts, date | None, Mapping[str, Any]]]:
        """(resource type, reference, what its code gives, date, resource) of every record whose codes map to no
        concept and are not on the site's ignore list: Observations, Conditions, AllergyIntolerances, drug
        records whose product is not in the catalog, Procedures, DiagnosticReports, and Encounter reasons
        (``reasonCode``). Each distinct code is read once per catalog (``code_facts``)."""
        catalog = self.catalog
        out: list[tuple[str, str, CodeFacts, date | None, Mapping[str, Any]]] = []

        def add(rtype: str, ref_: str, cc: Any, when: date | None, resource: Mapping[str, Any],
                extra: tuple[str, ...] = ()) -> None:
            facts = code_facts(catalog, cc, extra)
            if facts is not None:
                out.append((rtype, ref_, facts, when, resource))

        def scan_observations() -> None:
            self._observations  # noqa: B018 - classifies the Observations, keeping those that map to nothing
            for obs in self._unmapped_obs:
                add("Observation", ref(obs), obs.get("code"), observation_date(obs), obs)

        def scan_conditions() -> None:
            for c in self.conditions:
                if not c.concepts:
                    add("Condition", c.ref, c.resource.get("code"), c.start, c.resource)

        def scan_allergies() -> None:
            for r, concepts, _, a in self.allergies:
                if not concepts:
                    add("AllergyIntolerance", r, a.get("code"), None, a)

        def scan_drugs() -> None:
            unresolved = {source for source, _why in self.exposures.unresolved}
            for rtype in DRUG_TYPES if unresolved else ():
                for resource in self.record.of(rtype):
                    source = ref(resource)
                    if source not in unresolved or resource.get("status") in NOT_TAKEN:
                        continue
                    cc, extra = drug_code(self.record, resource)
                    if cc is not None or extra:
                        add(rtype, source, cc, None, resource, extra)

        def scan_others() -> None:
            for rtype in ("Procedure", "DiagnosticReport"):
                for res in self.record.of(rtype):
                    if not catalog.classify(res.get("code")):
                        add(rtype, ref(res), res.get("code"), None, res)
            for enc in self.record.of("Encounter"):
                for reason in enc.get("reasonCode") or ():
                    if isinstance(reason, dict) and not catalog.classify(reason):
                        add("Encounter", ref(enc), reason, None, enc)

        for section in (scan_observations, scan_conditions, scan_allergies, scan_drugs, scan_others):
            try:
                section()
            except Exception as e:  # malformed data: the criteria reading it say so; the other types still count
                log.debug("%s: records whose codes map to nothing: %s skipped: %s: %s", self.record.reference,
                          section.__name__, type(e).__name__, e)
        return out

    @cached_property
    def unmapped(self) -> list[Unmapped]:
        """Every record whose codes map to no concept and are not on the site's ignore list (``_unmapped_scan``)."""
        return [Unmapped(r, f.system, f.code, f.display, f.texts, when, res)
                for _, r, f, when, res in self._unmapped_scan]

    def unmapped_keys(self) -> Iterator[tuple[str, str, str]]:
        """(resource type, system, code or text) of each unmapped record, for the run's summary."""
        for rtype, _, f, _, _ in self._unmapped_scan:
            yield rtype, f.system, f.code or f.display

    @cached_property
    def _named_unmapped(self) -> dict[str, list[tuple[Unmapped, Named]]]:
        """The unmapped records whose texts name something, by resource type (most name nothing: an antacid)."""
        out: dict[str, list[tuple[Unmapped, Named]]] = {}
        for rtype, r, f, when, res in self._unmapped_scan:
            if f.named:
                out.setdefault(rtype, []).append((Unmapped(r, f.system, f.code, f.display, f.texts, when, res),
                                                  f.named))
        return out

    def possible(self, types: Iterable[str], concepts: Iterable[str] = (), classes: Iterable[str] = (),
                 among: Callable[[Mapping[str, Any]], bool] | None = None) -> list[tuple[Unmapped, tuple[str, ...]]]:
        """The records of ``types`` whose codes map to nothing and whose text or code display names one of the
        ``concepts`` or a member (or the name) of one of the ``classes``, each with what it possibly is. ``among``:
        only records it accepts (an Encounter that is an admission in the window, say)."""
        index = self._named_unmapped
        if not index:
            return []
        found = [x for t in set(types) for x in index.get(t, ())]
        if not found:
            return []
        classes = tuple(classes)
        ids = set(concepts) | {c.id for k in classes for c in self.catalog.members(k)}
        cls = set(classes)
        out = []
        for u, named in found:
            hits = sorted(named.concepts & ids)
            kinds = sorted(named.classes & cls)
            if (hits or kinds) and (among is None or among(u.resource)):
                out.append((u, tuple([self.catalog.concept(c).display for c in hits]
                                     + [f"a {k.replace('-', ' ')}" for k in kinds])))
        return out

    @cached_property
    def watches_results(self) -> bool:
        """Whether some Observation's code maps to nothing but its name gives a concept (rules' queries are then
        followed, ``newer_unmapped_results``)."""
        return bool(self._named_unmapped.get("Observation"))

    @cached_property
    def _unmapped_results(self) -> dict[str, list[Unmapped]]:
        """Observations whose codes map to nothing, by the concepts their names possibly give them."""
        index: dict[str, list[Unmapped]] = {}
        catalog = self.catalog
        for u, named in self._named_unmapped.get("Observation", ()):
            if u.when is None:
                continue
            for cid in {*named.concepts, *(c.id for k in named.classes for c in catalog.members(k))}:
                index.setdefault(cid, []).append(u)
        return index

    def newer_unmapped_results(self) -> list[tuple[Unmapped, tuple[str, ...]]]:
        """Observations whose codes map to nothing but whose names give a concept a rule asked for (since
        ``_asked`` was reset), dated in the window it asked about and newer than the newest mapped result it
        found: the rule may have read an older result, or found none, while the lab sent this one."""
        if not self._asked or not self._unmapped_obs:
            return []
        index = self._unmapped_results
        if not index:
            return []
        hits: dict[str, tuple[Unmapped, list[str]]] = {}
        for ids, start, end, newest in self._asked:
            for cid in ids:
                for u in index.get(cid, ()):
                    when = u.when
                    if when is None or when > end or (start is not None and when < start) or (
                            newest is not None and when <= newest):
                        continue
                    label = self.catalog.concept(cid).display
                    entry = hits.setdefault(u.ref, (u, []))
                    if label not in entry[1]:
                        entry[1].append(label)
        return [(u, tuple(labels)) for u, labels in hits.values()]

    # --- the patient --------------------------------------------------------------------------------------

    @property
    def patient(self) -> dict[str, Any]:
        return self.record.patient

    @cached_property
    def birth_date(self) -> date | None:
        bd = self.patient.get("birthDate")
        return to_date(bd) if isinstance(bd, str) and len(bd) >= 10 else None

    def age_on(self, day: date) -> int | None:
        b = self.birth_date
        if b is None:
            return None
        return day.year - b.year - ((day.month, day.day) < (b.month, b.day))

    @property
    def gender(self) -> str | None:
        g = self.patient.get("gender")
        return g if isinstance(g, str) else None

    def deceased(self) -> str | None:
        """Why the patient counts as deceased by S, or None."""
        p = self.patient
        when = to_date(p.get("deceasedDateTime"))
        if when is not None and when <= self.as_of:
            return f"deceased on {when} (Patient.deceasedDateTime)"
        if p.get("deceasedBoolean") is True:
            return "deceased (Patient.deceasedBoolean)"
        return None

    def latest_weight(self, lookback_days: int | None) -> tuple[Value | None, list[Value]]:
        return self.latest_value(["body-weight"], self.window(lookback_days))


@dataclass
class UnmappedTally:
    """Over a run: the records whose codes map to nothing (per resource type and code) and the criterion results
    that possible matches turned unknown. Each worker's result carries one; the main process merges them, as it
    merges ``ReadReport``."""

    records: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # (type, system, code or text) -> n
    affected: Counter[tuple[str, str]] = field(default_factory=Counter)  # (system, code or text) -> results
    turned: int = 0  # criterion results possible matches turned unknown

    def __bool__(self) -> bool:
        return bool(self.records or self.affected or self.turned)

    def add_records(self, keys: Iterable[tuple[str, str, str]]) -> None:
        """Count records by (resource type, system, code or text): ``Facts.unmapped_keys()``."""
        self.records.update(keys)

    def add_result(self, criteria: Mapping[str, Any]) -> None:
        """Count the criterion results (JSON, as ``screen`` writes them) that name unmapped records."""
        for c in criteria.values():
            details = c.get("details") if isinstance(c, Mapping) else None
            if not details or "unmapped" not in details:
                continue
            for key in {(m["system"], m["code"] or m["display"]) for m in details["unmapped"]}:
                self.affected[key] += 1
            if details.get("unmapped_turned"):
                self.turned += 1

    def merge(self, other: UnmappedTally | None) -> None:
        if other:
            self.records.update(other.records)
            self.affected.update(other.affected)
            self.turned += other.turned

    def by_type(self) -> dict[str, tuple[int, int]]:
        """Resource type -> (records, distinct codes)."""
        out: dict[str, list[int]] = {}
        for (rtype, _, _), n in self.records.items():
            row = out.setdefault(rtype, [0, 0])
            row[0] += n
            row[1] += 1
        return {k: (v[0], v[1]) for k, v in sorted(out.items())}
