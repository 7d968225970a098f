"""One criterion's result (met / not-met / unknown, with why and from what), combining parts, and the status.

Three-valued throughout: ``unknown`` is never turned into ``met`` or ``not-met`` silently. For an exclusion
``met`` means the exclusion applies. The status follows R4 ResearchSubject terms: ``ineligible``,
``potential-candidate`` (nothing failed, but data is missing), ``candidate`` (everything a machine can decide
passes; only what a person must decide remains). Never ``eligible`` on the machine's word alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

Outcome = Literal["met", "not-met", "unknown"]
MET: Outcome = "met"
NOT_MET: Outcome = "not-met"
UNKNOWN: Outcome = "unknown"


@dataclass(slots=True)
class CriterionResult:
    """What one criterion (or part) came to. ``person``: only a person can decide it (consent, judgement)."""

    result: Outcome
    reason: str
    evidence: list[str] = field(default_factory=list)
    needs_review: bool = False
    settings: list[str] = field(default_factory=list)
    passes_from: date | None = None
    to_resolve: str | None = None
    person: bool = False
    details: dict[str, Any] = field(default_factory=dict)

    def review(self, why: str | None = None) -> CriterionResult:
        """Flag for a person to confirm (``why`` joins the reason)."""
        self.needs_review = True
        if why and why not in self.reason:
            self.reason = f"{self.reason}; review: {why}"
        return self

    def setting(self, name: str, value: Any) -> CriterionResult:
        """Record that a documented setting decided (part of) this result."""
        text = f"{name}={value}"
        if text not in self.settings:
            self.settings.append(text)
        return self

    def to_json(self, protocol: str | None = None) -> dict[str, Any]:
        evidence = self.evidence
        out: dict[str, Any] = {"result": self.result, "reason": self.reason,
                               "evidence": _unique(evidence) if evidence else []}
        if self.needs_review:
            out["needs_review"] = True
        if self.person:
            out["decided_by"] = "person"
        if self.settings:
            out["setting"] = self.settings[0] if len(self.settings) == 1 else list(self.settings)
        if self.passes_from is not None:
            out["passes_from"] = self.passes_from.isoformat()
        if self.to_resolve:
            out["to_resolve"] = self.to_resolve
        if self.details:
            out["details"] = self.details
        if protocol:
            out["protocol"] = protocol
        return out


def _unique(items: list[str]) -> list[str]:
    """The non-empty items, first occurrence kept (most evidence lists hold none or one: no dict for those)."""
    if len(items) < 2:
        return [i for i in items if i]
    return list(dict.fromkeys(i for i in items if i))


def met(reason: str, evidence: Iterable[str] = (), **kw: Any) -> CriterionResult:
    return CriterionResult(MET, reason, list(evidence), **kw)


def not_met(reason: str, evidence: Iterable[str] = (), **kw: Any) -> CriterionResult:
    return CriterionResult(NOT_MET, reason, list(evidence), **kw)


def unknown(reason: str, to_resolve: str | None = None, evidence: Iterable[str] = (), **kw: Any) -> CriterionResult:
    return CriterionResult(UNKNOWN, reason, list(evidence), to_resolve=to_resolve or reason, **kw)


def for_person(reason: str, evidence: Iterable[str] = ()) -> CriterionResult:
    """A criterion no clinical data can decide (consent, investigator judgement, a future obligation)."""
    return CriterionResult(UNKNOWN, reason, list(evidence), to_resolve="a person must decide", person=True)


def combine_any(parts: Mapping[str, CriterionResult], what: str) -> CriterionResult:
    """An "any of" criterion (E3, E5, E14): met if a part is met, unknown if none is but one is unknown."""
    hits = [k for k, r in parts.items() if r.result == MET]
    unknowns = [k for k, r in parts.items() if r.result == UNKNOWN]
    evidence = [e for r in parts.values() for e in r.evidence]
    if hits:
        out = met(f"{what}: " + "; ".join(f"{k} {parts[k].reason}" for k in hits), evidence)
        dates = [parts[k].passes_from for k in hits]
        if all(dates):
            out.passes_from = max(d for d in dates if d)
    elif unknowns:
        out = unknown(f"{what}: undecided " + ", ".join(unknowns),
                      "; ".join(f"{k}: {parts[k].to_resolve}" for k in unknowns), evidence)
    else:
        out = not_met(f"{what}: none of {', '.join(parts)} applies", evidence)
    out.needs_review = any(r.needs_review for r in parts.values())
    for r in parts.values():
        for s in r.settings:
            if s not in out.settings:
                out.settings.append(s)
    return out


def fails(kind: str, result: Outcome) -> bool:
    """Whether a criterion's result makes the patient ineligible."""
    return result == (NOT_MET if kind == "inclusion" else MET)


def status_of(results: Mapping[str, tuple[str, CriterionResult]], deceased: bool = False) -> str:
    """``ineligible`` / ``potential-candidate`` / ``candidate`` from (kind, result) per top-level criterion."""
    if deceased or any(fails(kind, r.result) for kind, r in results.values()):
        return "ineligible"
    if any(r.result == UNKNOWN and not r.person for _, r in results.values()):
        return "potential-candidate"
    return "candidate"
