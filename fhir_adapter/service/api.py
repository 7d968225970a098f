"""The ``/v1`` endpoints integration engines call: evaluate one patient now, and the results feed."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, field_validator

from fhir_adapter.service.errors import JSONResponse, ServiceError, documented
from fhir_adapter.service.evaluate import FHIR_ID
from fhir_adapter.service.schemas import EvaluateResponse, FeedPage, FeedStatus, StudyId, StudyName
from fhir_adapter.service.security import Principal, authorize, require

FEED_DEFAULT_LIMIT, FEED_MAX_LIMIT = 100, 1000
PATIENT = rf"^(Patient/)?{FHIR_ID}$"
_CURSOR = re.compile(r"v1:(\d{1,18})")
MAX_CURSOR_DIGITS = 18


def _cursor_pattern() -> str:
    """The regular expression of exactly the cursors ``decode_cursor`` accepts: base64url (no padding) of
    ``v1:`` and 1 to 18 digits, by the characters each group of three digits (or the last one or two) encodes to.
    The OpenAPI document carries it, so that a cursor the service did not issue is already off the contract."""
    b64 = base64.urlsafe_b64encode
    digits = [str(d) for d in range(10)]
    first = "|".join(b64(f"{x}00".encode()).decode()[:2] for x in digits)  # the 1st digit decides 2 characters
    third = "".join(sorted({b64(f"0{y}0".encode()).decode()[2] for y in digits}))
    fourth = "".join(sorted({b64(f"00{z}".encode()).decode()[3] for z in digits}))
    one = "|".join(b64(x.encode()).decode().rstrip("=") for x in digits)
    two = "".join(sorted({b64(f"0{y}".encode()).decode().rstrip("=")[2] for y in digits}))
    full = f"(?:{first})[{third}][{fourth}]"
    groups = MAX_CURSOR_DIGITS // 3
    return (f"^{b64(b'v1:').decode()}(?:(?:{full}){{1,{groups}}}|(?:{full}){{0,{groups - 1}}}"
            f"(?:{one}|(?:{first})[{two}]))$")


CURSOR_PATTERN = _cursor_pattern()
_CURSOR_TEXT = re.compile(CURSOR_PATTERN)

router = APIRouter(prefix="/v1")


def _date_text(value: Any) -> Any:
    """A date in a body is YYYY-MM-DD text, as documented (pydantic would also take a number as a timestamp)."""
    if value is not None and not isinstance(value, str):
        raise ValueError("a date is a YYYY-MM-DD string")
    return value


IsoDate = Annotated[date, BeforeValidator(_date_text)]


# -- evaluate ---------------------------------------------------------------------------------------------------

class EvaluateRequest(BaseModel):
    """One patient, one study, one kind of assessment."""

    model_config = ConfigDict(extra="forbid")

    study: StudyName = Field(description="study id or alias, as the study file writes it (a study this service "
                             "is not configured for: 422)", examples=["NCT07377058"])
    patient: str = Field(pattern=PATIENT, description="the Patient id on the FHIR server", examples=["mda5-ild-01"])
    kind: Literal["screening", "response"] = "screening"
    as_of: IsoDate | None = Field(None, description="screening date (default: the service's as_of, usually today)")
    randomization: IsoDate | None = Field(None, description="expected randomization date (screening; default as_of)")
    baseline: IsoDate | None = Field(None, description="response: baseline date (default by the study's rule)")
    at: IsoDate | None = Field(None, description="response: follow-up date (default by the study's rule)")
    write_back: StrictBool = Field(False, description="also write the result to the FHIR server (scope 'writeback')")
    all_criteria: StrictBool = Field(False, description="screening: evaluate every criterion, also for a patient "
                                     "out of the study's entry cohort (default: a short result with the entry "
                                     "criterion that ruled them out, \"cohort\": \"out\")")

    @field_validator("patient")
    @classmethod
    def _bare_id(cls, v: str) -> str:
        return v.removeprefix("Patient/")


@router.post("/evaluate", response_model=EvaluateResponse, tags=["evaluate"],
             summary="Evaluate one patient now, from the FHIR server, and record the result in the feed",
             responses=documented(400, 401, 403, 404, 422, 502, 503, _404="no such Patient on the FHIR server",
                                  _422="a field breaks the schema, or the study cannot evaluate it (issue.expression "
                                  "names the field)"))
def evaluate(body: EvaluateRequest, request: Request,
             principal: Annotated[Principal, Depends(require("results:read"))]) -> Any:
    request.state.patient = body.patient
    settings = request.app.state.settings
    if body.write_back:
        authorize(request, "writeback")
        if not settings.write_back:
            raise ServiceError(403, "write-back is off on this service (setting write_back)",
                               expression=["write_back"], kind="forbidden")
    ev = request.app.state.evaluator.evaluate_and_record(
        body.study, body.kind, body.patient, "evaluate", as_of=body.as_of, randomization=body.randomization,
        baseline=body.baseline, at=body.at, write_back=body.write_back, all_criteria=body.all_criteria)
    seq = ev.seq
    if seq is None:
        latest = request.app.state.store.latest_result(ev.study, ev.kind, ev.patient)
        seq = latest.seq if latest else None
    request.state.audit_detail = f"{ev.study} {ev.kind} seq {seq}{' (new)' if ev.changed else ''}"
    out = {"study": ev.study, "kind": ev.kind, "patient": ev.patient, "seq": seq, "changed": ev.changed,
           "result": ev.result}
    if ev.write_back is not None:
        out["write_back"] = ev.write_back
    return JSONResponse(out)


# -- the feed ---------------------------------------------------------------------------------------------------

def encode_cursor(seq: int) -> str:
    """The opaque cursor for "after feed entry ``seq``"."""
    return base64.urlsafe_b64encode(f"v1:{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The seq of a cursor; ServiceError 400 naming ``since`` for anything ``encode_cursor`` did not make."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, ValueError):
        text = ""
    m = _CURSOR.fullmatch(text) if _CURSOR_TEXT.match(cursor) else None
    if m is None:
        raise ServiceError(400, "query parameter since: not a cursor this service issued (use 'next' from a "
                           "previous page, or leave it out to start from the beginning)", expression=["since"])
    return int(m.group(1))


@router.get("/feed", response_model=FeedPage, tags=["feed"],
            summary="Every assessment the adapter produced or changed, in order, after a cursor",
            responses={304: {"description": "nothing new since the ETag sent in If-None-Match"},
                       **documented(400, 401, 403, 422, _400="since is not a cursor this service issued")})
def feed(request: Request, principal: Annotated[Principal, Depends(require("results:read"))],
         since: Annotated[str | None, Query(max_length=64, description="cursor: 'next' of the previous page (a "
                                            "string this service issued; any other: 400)",
                                            json_schema_extra={"pattern": CURSOR_PATTERN})] = None,
         limit: Annotated[int, Query(ge=1, le=FEED_MAX_LIMIT)] = FEED_DEFAULT_LIMIT,
         study: Annotated[StudyId | None, Query(description="only this study's entries")] = None,
         status: Annotated[FeedStatus | None, Query(description="screening status or response class")] = None,
         kind: Annotated[Literal["screening", "response"] | None, Query()] = None) -> Any:
    after = decode_cursor(since) if since is not None else 0
    store = request.app.state.store
    last = store.last_seq()
    etag = _etag(last, after, limit, study, status, kind)
    if _matches(request.headers.get("if-none-match"), etag):
        request.state.audit_detail = "not modified"
        return Response(status_code=304, headers={"ETag": etag, "Cache-Control": "no-cache"})
    entries = store.feed(after, limit, study=study, status=status, kind=kind)
    # a short page saw everything up to ``last``: the next poll starts there even if no entry matched
    nxt = entries[-1].seq if len(entries) == limit else max(last, entries[-1].seq if entries else after)
    nxt = max(nxt, after)
    request.state.audit_detail = (f"entries {entries[0].seq}-{entries[-1].seq} ({len(entries)})" if entries
                                  else "no entries")
    cursor = encode_cursor(nxt)
    params = {"since": cursor, "limit": str(limit), "study": study, "status": status, "kind": kind}
    link = request.url.replace_query_params(**{k: v for k, v in params.items() if v is not None})
    return JSONResponse({"entries": [e.to_json() for e in entries], "next": cursor},
                          headers={"ETag": etag, "Cache-Control": "no-cache", "Link": f'<{link}>; rel="next"'})


def _etag(*parts: Any) -> str:
    digest = hashlib.blake2s(repr(parts[1:]).encode(), digest_size=8).hexdigest()
    return f'"{parts[0]}-{digest}"'


def _matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    tags = {t.strip().removeprefix("W/") for t in header.split(",")}
    return etag in tags or "*" in tags
