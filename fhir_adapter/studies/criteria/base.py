"""The screening context a rule reads (facts, anchors, settings) and the registries of rules (criteria and
information items) by name."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import date
from typing import Any

from fhir_adapter.studies.evidence import Facts
from fhir_adapter.studies.result import CriterionResult, not_met, unknown

Rule = Callable[["Ctx", dict[str, Any]], CriterionResult]
RULES: dict[str, Rule] = {}
InformationRule = Callable[["Ctx", dict[str, Any]], dict[str, Any]]
INFORMATION: dict[str, InformationRule] = {}


def rule(name: str) -> Callable[[Rule], Rule]:
    """Register a rule under the name a study file's criterion gives in ``"rule"``."""

    def register(fn: Rule) -> Rule:
        RULES[name] = fn
        return fn

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

    @property
    def S(self) -> date:
        return self.as_of

    @property
    def R(self) -> date:
        return self.randomization

    def setting(self, name: str) -> Any:
        return self.settings[name]

    def absence(self, types: Iterable[str], what: str, found: int | None = None) -> CriterionResult:
        """"No X among N records" when the source holds records of these types for the patient (they count
        as absent), else unknown: the source may simply not carry that kind of record. A record of these types
        that could not be read forbids the conclusion: it may be the X (unknown, named, for review)."""
        types = tuple(types)
        n = sum(len(self.record.of(t)) for t in types)
        policy = self.setting("absent_records")
        label = "/".join(types)
        unread = self.record.unread(types)
        if unread:
            named = "; ".join(u.shown() for u in unread[:3]) + (f"; and {len(unread) - 3} more" if len(unread) > 3
                                                                   else "")
            return unknown(f"no {what} among {n} readable {label} record{'s' if n != 1 else ''}, but "
                           f"{len(unread)} could not be read ({named})",
                           f"repair or re-export the unreadable record{'s' if len(unread) != 1 else ''} "
                           f"({unread[0].where}); confirm no {what}").review()
        if n and policy == "absent-when-type-held":
            return not_met(f"no {what} among {n} {label} record{'s' if n != 1 else ''}").setting(
                "absent_records", policy)
        if n:
            return unknown(f"no {what} recorded ({n} {label} records; absence not counted)",
                           f"confirm no {what}").setting("absent_records", policy)
        return unknown(f"no {label} records for this patient: {what} cannot be ruled out",
                       f"no {label} records on file; confirm no {what}")


def fmt(x: float) -> str:
    return f"{x:.3g}" if abs(x) < 100 else f"{x:.0f}"
