"""The bodies the service sends, as pydantic models: they are the OpenAPI document's schemas.

The hot paths (``/v1/evaluate``, ``/v1/feed``, a job's results) send the JSON the evaluator made as it is (orjson,
no model in between); these models only describe it, and the schemathesis run (tests/service) checks that what
is sent fits them. Result objects allow additional properties: a result may gain fields (a new criterion detail,
an identifier) without breaking a client built on this contract. The enumerations come from the data, not from
code: study ids and aliases from ``studies/``, response classes from the TIS rules.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SCREENING_STATUSES = ("candidate", "potential-candidate", "ineligible")  # studies/result.py status_of
KINDS = ("screening", "response")
CRITERION_RESULTS = ("met", "not-met", "unknown")


@cache
def study_names() -> dict[str, tuple[str, ...]]:
    """Every study file in the package: its id -> its id and aliases, as the study file writes them."""
    from fhir_adapter.studies.definition import load_study, study_files

    names: dict[str, tuple[str, ...]] = {}
    for path in study_files():
        try:
            study = load_study(str(path))
        except Exception:  # not a study (the TIS rules, the response settings)
            continue
        names[study.id] = (study.id, *study.aliases)
    return names


@cache
def response_classes() -> tuple[str, ...]:
    """The TIS response classes (the feed's ``status`` of a response assessment), lowest first."""
    from fhir_adapter.response.tis import load_rules

    rules = load_rules()
    out = [rules.below]
    for cuts in rules.cutoffs.values():
        out.extend(name for name, _ in cuts if name not in out)
    return tuple(out)


def feed_statuses() -> tuple[str, ...]:
    return (*SCREENING_STATUSES, *response_classes())


StudyName = Literal[tuple(n for names in study_names().values() for n in names)]  # type: ignore[valid-type]
StudyId = Literal[tuple(study_names())]  # type: ignore[valid-type]
FeedStatus = Literal[feed_statuses()]  # type: ignore[valid-type]


# -- OperationOutcome (every error) --------------------------------------------------------------------------

class OutcomeIssue(BaseModel):
    severity: Literal["fatal", "error", "warning", "information"]
    code: str = Field(description="FHIR issue type (http://hl7.org/fhir/issue-type): invalid, required, value, "
                      "login, forbidden, not-found, conflict, throttled, transient, processing, exception...")
    diagnostics: str = Field(description="what is wrong, for people")
    expression: list[str] | None = Field(None, description="the field(s) at fault: body field, query parameter, "
                                         "header (e.g. 'since', 'study', 'Authorization')")


class OperationOutcome(BaseModel):
    """A FHIR R4 OperationOutcome: every error answer, sent as ``application/fhir+json``."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "invalid", "diagnostics": "query parameter since: not a cursor",
                   "expression": ["since"]}]}]})

    resourceType: Literal["OperationOutcome"]
    issue: list[OutcomeIssue] = Field(min_length=1)


# -- results ---------------------------------------------------------------------------------------------------

class CriterionResult(BaseModel):
    """One criterion (or part of one): met, not-met or unknown, why, and the resources that decided it."""

    model_config = ConfigDict(extra="allow")

    result: Literal["met", "not-met", "unknown"]
    reason: str
    evidence: list[str] = Field(default_factory=list, description="references of the resources that decided it")
    to_resolve: str | None = Field(None, description="unknown: what would decide it")
    protocol: str | None = Field(None, description="the protocol's text of the criterion")


class ScreeningResult(BaseModel):
    """A screening result: the same JSON as ``fhir-adapter screen`` prints (additional properties allowed)."""

    model_config = ConfigDict(extra="allow")

    patient: str = Field(description="Patient/<id>")
    study: StudyId
    as_of: str = Field(description="the screening date", json_schema_extra={"format": "date"})
    status: Literal["candidate", "potential-candidate", "ineligible"]
    cohort: Literal["in", "out"] | None = Field(None, description="out: ruled out by an entry criterion (the "
                                                "only criterion in a short result)")
    reason: str
    review: list[str] = Field(description="criteria a person must decide or check")
    criteria: dict[str, CriterionResult]


class ResponseResult(BaseModel):
    """A treatment response assessment: the same JSON as ``fhir-adapter response`` prints (additional properties
    allowed). ``tis``, ``category`` and ``responder`` are null when a measure is missing (see ``missing``)."""

    model_config = ConfigDict(extra="allow")

    patient: str = Field(description="Patient/<id>")
    study: StudyId
    baseline: dict[str, Any] | None
    follow_up: dict[str, Any] | None
    tis: float | None = Field(description="Total Improvement Score")
    tis_range: list[float] | None = Field(description="the lowest and highest TIS the missing measures allow")
    category: str | None = Field(description="response class (none, minimal, moderate, major), null when the "
                                 "range spans more than one")
    responder: bool | None


Result = ScreeningResult | ResponseResult


class EvaluateResponse(BaseModel):
    study: StudyId = Field(description="the study's id")
    kind: Literal["screening", "response"]
    patient: str = Field(description="the Patient id")
    seq: int | None = Field(description="the feed entry of this result: new, or the latest one when unchanged")
    changed: bool = Field(description="true when this evaluation appended a feed entry")
    result: Result = Field(description="the same JSON as `fhir-adapter screen` / `response` prints")
    write_back: dict[str, Any] | None = Field(None, description="what was written to the FHIR server")


class FeedEntry(BaseModel):
    seq: int = Field(description="the entry's position in the feed (increasing)")
    study: StudyId
    kind: Literal["screening", "response"]
    patient: str
    status: FeedStatus | None = Field(description="screening status, or the response class (null: undecided)")
    origin: str = Field(description="what produced it: evaluate, poller, job:<id>")
    created_at: datetime
    result: Result


class FeedPage(BaseModel):
    entries: list[FeedEntry] = Field(description="feed entries, oldest first")
    next: str = Field(description="the cursor to send as 'since' in the next poll (also in the Link header)")


class Live(BaseModel):
    status: Literal["live"]


class Ready(BaseModel):
    status: Literal["ready"]
    checks: dict[str, bool] = Field(description="each dependency (database, fhir) and whether it answers")

