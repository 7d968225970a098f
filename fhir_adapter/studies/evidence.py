"""Facts from one patient record, with the resources they came from: the building blocks of every criterion.

``Facts`` classifies each Observation, Condition and AllergyIntolerance once (through the concept catalog, so
site-mapped local codes count like LOINC or SNOMED) and reads drug exposures once (``terminology.exposure``).
Criteria then ask: the latest value of a concept in a window (converted into the concept's canonical unit),
the qualitative verdict of a result, the conditions of a concept or class and their dates, the exposures of a
drug class in a window. Nothing here decides a criterion.

What ``Facts`` knows of records whose codes map to nothing (possible matches, for absences) is in
``studies.unmapped``, which it inherits.
"""

from __future__ import annotations

import calendar
import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import cached_property
from typing import Any

from fhir_adapter.record.dates import date_problem, observation_date, observation_date_problem
from fhir_adapter.record.dates import fhir_date as to_date
from fhir_adapter.record.draws import draw_key
from fhir_adapter.record.patient_record import PatientRecord
from fhir_adapter.record.references import local_id as ref
from fhir_adapter.studies.unmapped import UnmappedFacts
from fhir_adapter.terminology.catalog import Catalog
from fhir_adapter.terminology.concept import Concept
from fhir_adapter.terminology.exposure import DRUG_TYPES, Exposure, Exposures, read_exposures
from fhir_adapter.terminology.qualitative import ComponentRule, Verdict, read_components, read_verdict
from fhir_adapter.terminology.units import Converted, cannot_be, factor_to_canonical, quantity_of, quantity_to_canonical

log = logging.getLogger("fhir_adapter.studies")
# per catalog (kept, so that its id stays its own): Observation.code codings -> (concepts, the site's default unit)
_CODE_CACHE: dict[int, tuple[Catalog, dict[tuple[Any, ...], tuple[tuple[Concept, ...], str | None]]]] = {}
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



def add_years(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February
        return day.replace(year=day.year + years, day=28)


def add_months(day: date, months: int) -> date:
    m = day.month - 1 + months
    year, month = day.year + m // 12, m % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


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


def _newest_first(f: ObsFact) -> tuple[date, str]:
    return f.when or date.min, f.ref


class ObsIndex(dict[str, Any]):
    """Concept id -> its Observations as ``ObsFact``, newest first (``index[concept_id]``; an empty tuple for a
    concept the record holds no result of). A record holds results of many concepts and a study reads a few: each
    concept's list, and each ``ObsFact``, is made when first asked for (one ``ObsFact`` per Observation, whichever
    concepts it is read under)."""

    __slots__ = ("_made", "raw")

    def __init__(self) -> None:
        super().__init__()
        self.raw: dict[str, list[tuple[dict[str, Any], date | None, tuple[Concept, ...], str | None]]] = {}
        self._made: dict[int, ObsFact] = {}  # id of the Observation (held by the record) -> its ObsFact

    def __missing__(self, concept_id: str) -> Any:
        raw = self.raw.get(concept_id)
        if raw is None:
            self[concept_id] = ()
            return ()
        made = self._made
        facts = []
        for obs, when, concepts, unit in raw:
            fact = made.get(id(obs))
            if fact is None:
                fact = made[id(obs)] = ObsFact(ref(obs), when, obs, concepts, unit)
            facts.append(fact)
        facts.sort(key=_newest_first, reverse=True)
        self[concept_id] = facts
        return facts


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


class Facts(UnmappedFacts):
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
        self._undated_ids: set[str] = set()  # concepts with an Observation whose date cannot be read
        self._windows: dict[Any, date] = {}  # look-back days -> its first day (``window``)
        # (concept ids, start, end, date of the newest result found) of each Observation query while a rule runs
        self._asked: list[tuple[tuple[str, ...], date | None, date, date | None]] | None = None

    # --- observations -------------------------------------------------------------------------------------

    def _classify_code(self, code: Any) -> tuple[tuple[Concept, ...], str | None]:
        """The concepts (and a site's default unit) of an Observation.code, cached per catalog by its codings:
        a population repeats a few hundred lab codes millions of times."""
        codings = code.get("coding") if type(code) is dict or isinstance(code, Mapping) else None
        if not codings:
            return (), None
        if type(codings) is list and len(codings) == 1 and type(codings[0]) is dict:  # most codes
            c = codings[0]
            key: tuple[Any, ...] = ((c.get("system"), c.get("code")),)
        else:
            try:
                key = tuple([(c.get("system"), c.get("code")) for c in codings])
            except AttributeError:
                return (), None
        kept = _CODE_CACHE.get(id(self.catalog))
        if kept is None or kept[0] is not self.catalog:
            kept = _CODE_CACHE[id(self.catalog)] = (self.catalog, {})
        cache = kept[1]
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
    def _observations(self) -> ObsIndex:
        """Every Observation classified and dated (noting those that map to nothing and the concepts with an
        undated result); their ``ObsFact`` lists are made per concept when a rule first asks (``ObsIndex``)."""
        index = ObsIndex()
        raw = index.raw
        unmapped, undated = self._unmapped_obs, self._undated_ids
        classify = self._classify_code
        read: dict[str, date | None] = {}  # a draw's results share their effectiveDateTime: each read once
        for obs in self.record.of("Observation"):
            concepts, default_unit = classify(obs.get("code"))
            if not concepts:
                unmapped.append(obs)
                continue
            written = obs.get("effectiveDateTime")
            if type(written) is str:  # observation_date reads this one first when it is there
                when = read.get(written, date.max)
                if when is date.max:
                    when = read[written] = to_date(written)
            else:
                when = observation_date(obs)
            entry = (obs, when, concepts, default_unit)
            for concept in concepts:
                cid = concept.id
                found = raw.get(cid)
                if found is None:
                    raw[cid] = [entry]
                else:
                    found.append(entry)
                if when is None:
                    undated.add(cid)
        return index

    def observations(self, concept_ids: Iterable[str], start: date | None = None,
                     end: date | None = None) -> list[ObsFact]:
        """Observations of any of the concepts dated in [start, end] (end defaults to S), newest first."""
        end = end or self.as_of
        horizon, asked = self.horizon, self._asked
        if horizon or asked is not None:
            concept_ids = list(concept_ids)
        if horizon:
            for cid in concept_ids:
                first = horizon.get(cid)
                if first is not None and (start is None or start < first):
                    self._check_horizon(concept_ids, start)  # raises, naming the first such concept
        index = self._observations
        if isinstance(concept_ids, (list, tuple)) and len(concept_ids) == 1:  # one concept's list is sorted already
            facts = index[concept_ids[0]]
            found = [f for f in facts if f.when is not None and f.when <= end and (start is None or f.when >= start)
                     ] if facts else []
        else:
            held = [facts for facts in (index[cid] for cid in concept_ids) if facts]
            seen: dict[str, ObsFact] = {}
            for facts in held:
                for f in facts:
                    if f.when is None or f.when > end or (start is not None and f.when < start):
                        continue
                    seen.setdefault(f.ref, f)
            found = sorted(seen.values(), key=_newest_first, reverse=True) if len(seen) > 1 else list(seen.values())
        if asked is not None:
            asked.append((tuple(concept_ids), start, end, found[0].when if found else None))
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
        """The start of a look-back of ``days`` before S (None: any time); each look-back worked out once."""
        if days is None:
            return None
        try:
            return self._windows[days]
        except KeyError:
            start = self._windows[days] = self.as_of - timedelta(days=days)
            return start
        except TypeError:  # not a number of days: timedelta says why
            return self.as_of - timedelta(days=days)

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
        self._observations  # noqa: B018 - classifies the Observations, noting the concepts with undated ones
        if self._undated_ids.isdisjoint(concept_ids):  # the common case: every result has a readable date
            return []
        seen: dict[str, ObsFact] = {}
        first = start.isoformat() if start else ""
        for cid in concept_ids:
            for f in self._observations[cid]:
                written = f.resource.get("effectiveDateTime", f.resource.get("effectiveInstant"))
                if f.when is None and not (first and isinstance(written, str) and written[:10] < first):
                    seen.setdefault(f.ref, f)
        return [f"{ref} set aside: {observation_date_problem(f.resource)}" for ref, f in sorted(seen.items())]

    def undated_results(self) -> list[str]:
        """``undated`` for every concept: each result of the record's mapped Observations whose date cannot be read
        (the screen names them all, beside what each criterion said)."""
        self._observations  # noqa: B018 - classifies the Observations, noting the concepts with undated ones
        return self.undated(sorted(self._undated_ids)) if self._undated_ids else []

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
        if not self.conditions:
            return []
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
        if not self.exposures.items:
            return []
        cls, ids = set(classes), set(concept_ids)
        return [e for e in self.exposures.items
                if e.taken and (not cls.isdisjoint(e.concept.classes) or e.concept.id in ids)]

    @cached_property
    def allergies(self) -> list[tuple[str, tuple[Concept, ...], str, dict[str, Any]]]:
        out = []
        for a in self.record.of("AllergyIntolerance"):
            out.append((ref(a), self.catalog.classify(a.get("code")), _cc_text(a.get("code")), a))
        return out

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
