"""Records whose codes map to no concept, and what their names say: no absence is concluded over them.

A record whose code maps to nothing (and is not on the site's ``ignore`` list) is kept as ``Unmapped``;
``UnmappedFacts.possible`` finds those whose code display or text names what a criterion looks for (the name
index, ``terminology.names``), so that a criterion never concludes "no X among N records" over a record that may
be the X (issue rule: closed-world absence only over records the adapter understands). ``UnmappedTally`` counts
them over a run for the summary. Names are matched per distinct text (``code_facts``), never per resource.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from functools import cached_property
from typing import Any

import orjson

from fhir_adapter.record.dates import observation_date
from fhir_adapter.record.patient_record import PatientRecord
from fhir_adapter.record.references import local_id as ref
from fhir_adapter.terminology.catalog import Catalog, cc_texts
from fhir_adapter.terminology.exposure import DRUG_TYPES, NOT_TAKEN, product_problem
from fhir_adapter.terminology.names import Named

log = logging.getLogger("fhir_adapter.studies")
# the types whose records may carry a code that maps to nothing, in the order the run's summary lists them
UNMAPPED_TYPES = ("Observation", "Condition", "AllergyIntolerance", *DRUG_TYPES, "Procedure", "DiagnosticReport",
                  "Encounter")


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


class UnmappedFacts:
    """The part of ``studies.evidence.Facts`` about records whose codes map to nothing (``Facts`` inherits it and
    provides what it reads: the record, the catalog, the classified Observations, conditions, allergies and drug
    exposures, and the queries rules made)."""

    record: PatientRecord
    catalog: Catalog
    _unmapped_obs: list[dict[str, Any]]
    _asked: list[tuple[tuple[str, ...], date | None, date, date | None]] | None

    def _unmapped_in(self, rtype: str) -> list[tuple[str, str, CodeFacts, date | None, Mapping[str, Any]]]:
        """(resource type, reference, what its code gives, date, resource) of each record of ``rtype`` whose codes
        map to no concept and are not on the site's ignore list; worked out per type when first asked (a
        criterion about Conditions never reads the drugs). Each distinct code is read once per catalog."""
        cache: dict[str, list[tuple[str, str, CodeFacts, date | None, Mapping[str, Any]]]] = \
            self.__dict__.setdefault("_unmapped_cache", {})
        found = cache.get(rtype)
        if found is None:
            found = []
            try:
                for ref_, cc, when, resource, extra in self._uncoded(rtype):
                    facts = code_facts(self.catalog, cc, extra)
                    if facts is not None:
                        found.append((rtype, ref_, facts, when, resource))
            except Exception as e:  # malformed data: the criteria reading it say so; the other types still count
                log.debug("%s: %s records whose codes map to nothing: skipped: %s: %s", self.record.reference,
                          rtype, type(e).__name__, e)
                found = []
            cache[rtype] = found
        return found

    def _uncoded(self, rtype: str) -> Iterator[tuple[str, Any, date | None, Mapping[str, Any], tuple[str, ...]]]:
        """(reference, CodeableConcept, date, resource, extra texts) of the records of ``rtype`` that map to no
        concept: Observations, Conditions, AllergyIntolerances, drug records whose product is not in the catalog
        (not those not taken), Procedures, DiagnosticReports, and Encounter reasons (``reasonCode``)."""
        catalog = self.catalog
        if rtype == "Observation":
            self._observations  # noqa: B018 - classifies the Observations, keeping those that map to nothing
            for obs in self._unmapped_obs:
                yield ref(obs), obs.get("code"), observation_date(obs), obs, ()
        elif rtype == "Condition":
            for c in self.conditions:
                if not c.concepts:
                    yield c.ref, c.resource.get("code"), c.start, c.resource, ()
        elif rtype == "AllergyIntolerance":
            for r, concepts, _, a in self.allergies:
                if not concepts:
                    yield r, a.get("code"), None, a, ()
        elif rtype in DRUG_TYPES:
            for resource in self.record.of(rtype):
                if resource.get("status") in NOT_TAKEN or not product_problem(resource, self.record, catalog):
                    continue
                cc, extra = drug_code(self.record, resource)
                if cc is not None or extra:
                    yield ref(resource), cc, None, resource, extra
        elif rtype == "Encounter":
            for enc in self.record.of("Encounter"):
                for reason in enc.get("reasonCode") or ():
                    if isinstance(reason, dict) and not catalog.classify(reason):
                        yield ref(enc), reason, None, enc, ()
        else:  # Procedure, DiagnosticReport
            for res in self.record.of(rtype):
                if not catalog.classify(res.get("code")):
                    yield ref(res), res.get("code"), None, res, ()

    @property
    def _unmapped_scan(self) -> list[tuple[str, str, CodeFacts, date | None, Mapping[str, Any]]]:
        """``_unmapped_in`` of every type that can hold a code to map (of those the record was given: a
        ``PartialRecord`` holds only some)."""
        return [x for rtype in UNMAPPED_TYPES if self.record.can_read(rtype) for x in self._unmapped_in(rtype)]

    @cached_property
    def unmapped(self) -> list[Unmapped]:
        """Every record whose codes map to no concept and are not on the site's ignore list (``_unmapped_scan``)."""
        return [Unmapped(r, f.system, f.code, f.display, f.texts, when, res)
                for _, r, f, when, res in self._unmapped_scan]

    def unmapped_keys(self, types: Iterable[str] | None = None) -> Iterator[tuple[str, str, str]]:
        """(resource type, system, code or text) of each unmapped record (of ``types``, when given), for the run's
        summary."""
        scan = self._unmapped_scan if types is None else [x for t in UNMAPPED_TYPES if t in types
                                                          for x in self._unmapped_in(t)]
        for rtype, _, f, _, _ in scan:
            yield rtype, f.system, f.code or f.display

    def _named_in(self, rtype: str) -> list[tuple[Unmapped, Named]]:
        """The unmapped records of ``rtype`` whose texts name something (most name nothing: an antacid)."""
        cache: dict[str, list[tuple[Unmapped, Named]]] = self.__dict__.setdefault("_named_cache", {})
        found = cache.get(rtype)
        if found is None:
            found = cache[rtype] = [(Unmapped(r, f.system, f.code, f.display, f.texts, when, res), f.named)
                                    for _, r, f, when, res in self._unmapped_in(rtype) if f.named]
        return found

    @property
    def _named_unmapped(self) -> dict[str, list[tuple[Unmapped, Named]]]:
        """``_named_in`` by resource type, for every type (the run's summary)."""
        return {t: found for t in UNMAPPED_TYPES if self.record.can_read(t) and (found := self._named_in(t))}

    def names_any(self, types: Iterable[str]) -> bool:
        """Whether some unmapped record of ``types`` names anything (possible matches are then looked for)."""
        return any(self._named_in(t) for t in types)

    def possible(self, types: Iterable[str], concepts: Iterable[str] = (), classes: Iterable[str] = (),
                 among: Callable[[Mapping[str, Any]], bool] | None = None) -> list[tuple[Unmapped, tuple[str, ...]]]:
        """The records of ``types`` whose codes map to nothing and whose text or code display names one of the
        ``concepts`` or a member (or the name) of one of the ``classes``, each with what it possibly is. ``among``:
        only records it accepts (an Encounter that is an admission in the window, say)."""
        found = [x for t in dict.fromkeys(types) for x in self._named_in(t)]
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
        return bool(self._named_in("Observation"))

    @cached_property
    def _unmapped_results(self) -> dict[str, list[Unmapped]]:
        """Observations whose codes map to nothing, by the concepts their names possibly give them."""
        index: dict[str, list[Unmapped]] = {}
        catalog = self.catalog
        for u, named in self._named_in("Observation"):
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
