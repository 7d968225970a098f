"""The screening context a rule reads (facts, anchors, settings) and the registries of rules (criteria and
information items) by name.

Every conclusion that rests on something being absent from the records goes through ``Ctx.closed_world`` (and
``Ctx.absence``, which uses it): a record that could not be read, or a record whose codes map to nothing but
whose text or code display names what the criterion looks for (a *possible match*), makes it unknown, with the
code to map. A rule's Observation queries are checked the same way when it returns (``rule``): a newer result
with an unmapped code that names the concept is pointed at, never read as the value.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from datetime import date
from typing import Any

from fhir_adapter.studies.evidence import Facts
from fhir_adapter.studies.result import UNKNOWN, CriterionResult, not_met, unknown
from fhir_adapter.studies.unmapped import Unmapped

Rule = Callable[["Ctx", dict[str, Any]], CriterionResult]
RULES: dict[str, Rule] = {}
InformationRule = Callable[["Ctx", dict[str, Any]], dict[str, Any]]
INFORMATION: dict[str, InformationRule] = {}


def rule(name: str) -> Callable[[Rule], Rule]:
    """Register a rule under the name a study file's criterion gives in ``"rule"``."""

    def register(fn: Rule) -> Rule:
        @functools.wraps(fn)
        def run(ctx: Ctx, p: dict[str, Any]) -> CriterionResult:
            if not ctx.watches_results:  # no Observation with an unmapped code names anything: nothing to follow
                return fn(ctx, p)
            asked, ctx._asked = ctx._asked, []
            try:
                return ctx.unmapped_results(fn(ctx, p))
            finally:
                ctx._asked = asked

        RULES[name] = run
        return run

    return register


def information(name: str) -> Callable[[InformationRule], InformationRule]:
    """Register an information rule (a study file's ``information[].rule``): it returns a JSON-ready dict for a
    person (with a one-line ``summary``) and never decides anything."""

    def register(fn: InformationRule) -> InformationRule:
        INFORMATION[name] = fn
        return fn

    return register


class Ctx(Facts):
    """Facts plus the study's settings. ``S`` is the screening date, ``R`` the randomization date."""

    def __init__(self, record: Any, catalog: Any, as_of: date, randomization: date, settings: dict[str, Any],
                 horizon: Mapping[str, date] | None = None):
        super().__init__(record, catalog, as_of, randomization, horizon)
        self.settings = settings
        self._held: dict[tuple[str, ...], tuple[int, str]] = {}  # types -> (records held, label) for ``absence``

    @property
    def S(self) -> date:
        return self.as_of

    @property
    def R(self) -> date:
        return self.randomization

    def setting(self, name: str) -> Any:
        return self.settings[name]

    def absence(self, types: Iterable[str], what: str, found: int | None = None, *, concepts: Iterable[str] = (),
                classes: Iterable[str] = (), among: Callable[[Mapping[str, Any]], bool] | None = None,
                also: Iterable[str] = ()) -> CriterionResult:
        """"No X among N records" when the source holds records of these types for the patient (they count
        as absent), else unknown: the source may simply not carry that kind of record. A record of these types
        that could not be read forbids the conclusion: it may be the X (unknown, named, for review). So does a
        record whose codes map to nothing but whose text names one of the ``concepts`` or ``classes`` looked for
        (``closed_world``; ``also``: more types to look in, ``among``: only the records it accepts)."""
        types = tuple(types)
        try:
            n, label = self._held[types]
        except KeyError:  # counted once per record and types
            n, label = self._held[types] = sum(len(self.record.of(t)) for t in types), "/".join(types)
        policy = self.settings["absent_records"]
        unread = self.record.unread(types) if self.record.unreadable else None
        if unread:
            named = "; ".join(u.shown() for u in unread[:3]) + (f"; and {len(unread) - 3} more" if len(unread) > 3
                                                                   else "")
            return unknown(f"no {what} among {n} readable {label} record{'s' if n != 1 else ''}, but "
                           f"{len(unread)} could not be read ({named})",
                           f"repair or re-export the unreadable record{'s' if len(unread) != 1 else ''} "
                           f"({unread[0].where}); confirm no {what}").review()
        if n and policy == "absent-when-type-held":
            r = not_met(f"no {what} among {n} {label} record{'s' if n != 1 else ''}").setting(
                "absent_records", policy)
        elif n:
            r = unknown(f"no {what} recorded ({n} {label} records; absence not counted)",
                        f"confirm no {what}").setting("absent_records", policy)
        else:
            r = unknown(f"no {label} records for this patient: {what} cannot be ruled out",
                        f"no {label} records on file; confirm no {what}")
        return self.closed_world(r, types, what, concepts=concepts, classes=classes, among=among, also=also)

    def closed_world(self, r: CriterionResult, types: Iterable[str], what: str, *, concepts: Iterable[str] = (),
                     classes: Iterable[str] = (), among: Callable[[Mapping[str, Any]], bool] | None = None,
                     also: Iterable[str] = ()) -> CriterionResult:
        """``r``, a result that holds only if the records of ``types`` hold no (other) ``what``, unless they
        cannot show that: a record of these types that could not be read, or one whose codes map to nothing and
        whose text names one of the ``concepts`` (or a member or the name of one of the ``classes``) makes a
        decided ``r`` unknown, naming the record and the code to map. An unknown ``r`` gains the code to map.
        Text alone never makes a criterion met."""
        types = tuple(types)
        if (r.result == UNKNOWN or not self.record.unreadable) and not self.names_any((*types, *also)):
            return r  # the common case: nothing unread, no unmapped record of these types names anything
        if r.result != UNKNOWN and self.record.unreadable:
            unread = self.record.unread(types)
            if unread:
                named = "; ".join(u.shown() for u in unread[:3]) + (
                    f"; and {len(unread) - 3} more" if len(unread) > 3 else "")
                out = unknown(f"{r.reason}, but {len(unread)} {'/'.join(types)} record"
                              f"{'s' if len(unread) != 1 else ''} could not be read ({named})",
                              f"repair or re-export the unreadable record{'s' if len(unread) != 1 else ''} "
                              f"({unread[0].where}); confirm no {what}", r.evidence).review()
                out.settings = list(r.settings)
                return out
        found = self.possible((*types, *also), concepts, classes, among)
        return possibly(r, found) if found else r

    def unmapped_results(self, r: CriterionResult) -> CriterionResult:
        """After a rule: a result with an unmapped code that names a concept the rule asked for, newer than what
        it found (or found where it found nothing), is pointed at: an unknown ``r`` gains the code to map (and the
        record as evidence); a decided ``r`` keeps its value, flagged for review with the code to map. The value
        of such a result is never read."""
        found = self.newer_unmapped_results()
        if not found:
            return r
        known = {m["record"] for m in r.details.get("unmapped", ())}
        found = [(u, names) for u, names in found if u.ref not in known]
        if not found:
            return r
        hint = to_map(found)
        r.details.setdefault("unmapped", []).extend(as_details(found))
        if r.result == UNKNOWN:
            r.to_resolve = f"{hint}; {r.to_resolve}" if r.to_resolve else hint
            r.evidence.extend(u.ref for u, _ in found)
        else:
            r.review(f"a newer result with a code that maps to nothing may be the same test: {shown(found)}; {hint}")
        return r


def shown(found: list[tuple[Unmapped, tuple[str, ...]]]) -> str:
    """The records, for a reason: "MedicationStatement/x system|code 'display' (possibly prednisone)"."""
    text = "; ".join(f"{u.ref} {u.shown()} (possibly {', '.join(names)})" for u, names in found[:3])
    return text + (f"; and {len(found) - 3} more" if len(found) > 3 else "")


def to_map(found: list[tuple[Unmapped, tuple[str, ...]]]) -> str:
    """What resolves possible matches: the codes to map in the site file (or list under ignore), or for a record
    with only a text, a person."""
    codes: dict[tuple[str, str], str] = {}
    texts = []
    for u, names in found:
        if u.code:
            codes.setdefault(u.key, f"{u.shown()} (possibly {', '.join(names)})")
        else:
            texts.append(f"{u.ref} holds only the text '{u.display}' (possibly {', '.join(names)}): a person reads "
                         "it (a site file maps codes, not texts)")
    out = []
    if codes:
        out.append(f"map {', '.join(codes.values())} in the site file, or list "
                   f"{'it' if len(codes) == 1 else 'them'} under ignore")
    return "; ".join(out + list(dict.fromkeys(texts)))


def as_details(found: list[tuple[Unmapped, tuple[str, ...]]]) -> list[dict[str, Any]]:
    return [{"record": u.ref, "system": u.system, "code": u.code, "display": u.display, "possibly": list(names)}
            for u, names in found]


def possibly(r: CriterionResult, found: list[tuple[Unmapped, tuple[str, ...]]]) -> CriterionResult:
    """``r`` with its possible matches: a decided ``r`` becomes unknown (what it would have been is kept in
    ``details.unmapped_turned``); an unknown one gains the codes to map."""
    known = {m["record"] for m in r.details.get("unmapped", ())}
    found = [(u, names) for u, names in found if u.ref not in known]
    if not found:
        return r
    hint = to_map(found)
    refs = [u.ref for u, _ in found]
    if r.result == UNKNOWN:
        r.to_resolve = f"{hint}; {r.to_resolve}" if r.to_resolve else hint
        r.evidence.extend(refs)
        r.details.setdefault("unmapped", []).extend(as_details(found))
        return r
    n = len(found)
    many = n != 1
    out = unknown(f"{r.reason}; but {n} record{'s' if many else ''} whose code{'s' if many else ''} "
                  f"map{'' if many else 's'} to nothing may be what it looks for: {shown(found)}", hint,
                  [*r.evidence, *refs])
    out.needs_review = r.needs_review
    out.settings = list(r.settings)
    out.details = {**r.details, "unmapped": as_details(found), "unmapped_turned": r.result}
    return out


def fmt(x: float) -> str:
    return f"{x:.3g}" if abs(x) < 100 else f"{x:.0f}"
