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

from fhir_adapter.record.dates import fhir_date as to_date
from fhir_adapter.record.patient_record import PatientRecord
from fhir_adapter.terminology.catalog import Catalog, cc_texts
from fhir_adapter.terminology.concept import Concept
from fhir_adapter.terminology.exposure import DRUG_TYPES, NOT_TAKEN, Exposure, Exposures, read_exposures
from fhir_adapter.terminology.names import Named
from fhir_adapter.terminology.qualitative import read_result, verdict
from fhir_adapter.terminology.units import Converted, quantity_of, quantity_to_canonical

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
    """A numeric result in its concept's canonical unit (``value`` None when unusable: ``problem`` says why)."""

    fact: ObsFact
    converted: Converted

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
        return f"{c.comparator or ''}{c.value:g} {c.unit or ''}".strip() + f" on {self.fact.when}"


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
        """The newest usable value in the window, and the newer results that could not be used (bad units).

        Converts results newest first and stops at the first usable one."""
        unusable: list[Value] = []
        for v in self._values(concept_ids, start, end):
            if v.value is not None:
                return v, unusable
            unusable.append(v)
        return None, unusable

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

    def verdict(self, fact: ObsFact) -> str | None:
        """positive / negative / indeterminate for a qualitative result (value, interpretation, or a titre
        above/below its reference range); None when the result does not say."""
        result = read_result(fact.resource)
        found = verdict(result)
        if found:
            return found
        if result.kind == "quantity" and result.value is not None:
            if result.interpretation in ("high", "critical-high", "abnormal"):
                return "positive"
            if result.interpretation in ("normal", "low"):
                return "negative"
        return None

    def results(self, concept_ids: Iterable[str], start: date | None = None,
                end: date | None = None) -> list[tuple[ObsFact, str | None]]:
        """Qualitative verdicts of the concepts' results in the window, newest first."""
        return [(f, self.verdict(f)) for f in self.observations(concept_ids, start, end)]

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
