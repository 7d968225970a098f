"""Criteria no clinical data can decide: I6 (future TMP-SMX obligation), I8 (consent), E18 (investigator)."""

from __future__ import annotations

from typing import Any

from fhir_adapter.studies.criteria.base import Ctx, rule
from fhir_adapter.studies.result import CriterionResult, for_person


@rule("person")
def person(ctx: Ctx, p: dict[str, Any]) -> CriterionResult:
    """Always unknown: the study file's ``reason`` says who decides and what."""
    return for_person(p["reason"])


@rule("tmp_smx_obligation")
def tmp_smx_obligation(ctx: Ctx, p: dict[str, Any]) -> CriterionResult:
    """I6: "must receive prophylactic TMP-SMZ ... 1-2 tablets daily during treatment": a future obligation.

    Current TMP-SMX is shown as supporting evidence only; a sulfonamide allergy would block it (E10).
    """
    current = [e for e in ctx.exposures_of(classes=p["classes"]) if e.active_on(ctx.S)]
    if current:
        r = for_person(f"future obligation (during treatment): a person must confirm; TMP-SMX active at "
                       f"screening ({current[0].product or current[0].concept.display})", [e.source for e in current])
    else:
        r = for_person("future obligation (during treatment): a person must confirm; no TMP-SMX active at "
                       "screening (prophylaxis to start)")
    return r.review() if not current else r
