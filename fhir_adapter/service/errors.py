"""Every error the service answers with is a FHIR OperationOutcome that names the field at fault.

``ServiceError`` is what the endpoints raise; the handlers here turn it, FastAPI's validation errors, unknown
routes and the evaluator's errors into OperationOutcome bodies. A true bug becomes a 500 OperationOutcome with
no stack trace in the body (``answer_bug``); the log gets the exception type and the route, never its message or
a traceback (either may name a patient).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse as _FastAPIJSONResponse
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from fhir_adapter.service.evaluate import EvaluationError, FhirUnavailable, PatientNotFound, UpstreamError

log = logging.getLogger("fhir_adapter.service")

FHIR_JSON = "application/fhir+json"

# FHIR issue-type codes (http://hl7.org/fhir/issue-type) by HTTP status
_CODES = {400: "invalid", 401: "login", 403: "forbidden", 404: "not-found", 405: "not-supported",
          406: "not-supported", 409: "conflict", 413: "too-long", 415: "not-supported", 422: "invalid",
          429: "throttled", 500: "exception", 502: "transient", 503: "transient", 504: "timeout"}

# An error answer in the OpenAPI document: ``schemas.OperationOutcome`` as sent, application/fhir+json
# (``openapi.py`` adds the component and documents the statuses every operation can answer with)
OUTCOME_SCHEMA: dict[str, Any] = {
    "description": "FHIR OperationOutcome naming the field at fault (issue.expression)",
    "content": {FHIR_JSON: {"schema": {"$ref": "#/components/schemas/OperationOutcome"}}},
}

_REASONS = {400: "the request body is not JSON, or a parameter is wrong (issue.expression names it)",
            401: "no API key, or not a valid one (WWW-Authenticate)", 403: "the API key lacks the scope needed",
            404: "not found", 409: "the resource's state does not allow it",
            422: "a field breaks the schema (issue.expression names it)",
            429: "too many jobs queued or running for this API key (Retry-After)",
            502: "the FHIR server refused the request", 503: "the FHIR server (or the database) is unavailable "
            "(Retry-After)"}


def documented(*statuses: int, **descriptions: str) -> dict[int | str, dict[str, Any]]:
    """``responses=`` of a route: each status an OperationOutcome; ``descriptions``: ``_404="no such job"``."""
    return {s: {**OUTCOME_SCHEMA, "description": descriptions.get(f"_{s}") or _REASONS.get(s)
                or OUTCOME_SCHEMA["description"]} for s in statuses}


class JSONResponse(_FastAPIJSONResponse):
    """A JSON body serialized by orjson (dates, fast). FastAPI's subclass, so that a route's ``response_model``
    is its documented schema (FastAPI documents any other response class as a string)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class ServiceError(Exception):
    """An error answer: HTTP ``status``, a message for people, the ``expression`` (field paths) at fault."""

    def __init__(self, status: int, message: str, *, expression: Sequence[str] = (), code: str | None = None,
                 headers: dict[str, str] | None = None, kind: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.expression = list(expression)
        self.code = code or _CODES.get(status, "processing")
        self.headers = headers or {}
        self.kind = kind or self.code


def outcome(status: int, issues: list[dict[str, Any]], headers: dict[str, str] | None = None) -> Response:
    body = {"resourceType": "OperationOutcome", "issue": issues}
    return JSONResponse(body, status_code=status, headers=headers, media_type=FHIR_JSON)


def issue(message: str, *, code: str = "invalid", expression: Sequence[str] = ()) -> dict[str, Any]:
    out: dict[str, Any] = {"severity": "error", "code": code, "diagnostics": message}
    if expression:
        out["expression"] = list(expression)
    return out


def error_response(err: ServiceError) -> Response:
    return outcome(err.status, [issue(err.message, code=err.code, expression=err.expression)], err.headers)


def _note(request: Request, kind: str) -> None:
    """Tell the metrics middleware what kind of error this was."""
    request.state.error_kind = kind


_WHERE = {"query": "query parameter", "path": "path parameter", "header": "header", "body": "body field"}


def _validation_issues(errors: Sequence[Any]) -> tuple[int, list[dict[str, Any]]]:
    """400 for a body that is not JSON at all, 422 for fields that break the schema; one issue per field.
    Input values are never echoed (they may be patient ids)."""
    issues, status = [], 422
    for e in errors:
        loc = [str(p) for p in e.get("loc", ())]
        where, path = (loc[0], loc[1:]) if loc and loc[0] in _WHERE else ("body", loc)
        if e.get("type") == "json_invalid":
            status = 400
            issues.append(issue(f"the request body is not valid JSON ({e.get('msg', '')})", expression=["body"]))
            continue
        field = ".".join(path) if path else where
        code = "required" if e.get("type") == "missing" else "value" if where == "body" else "invalid"
        issues.append(issue(f"{_WHERE[where]} {field}: {e.get('msg', 'invalid')}", code=code, expression=[field]))
    return status, issues or [issue("invalid request")]


def install(app: FastAPI, authenticate: Callable[[Request], Any]) -> None:
    """Register the handlers on ``app``. ``authenticate`` (``security.authenticate``, passed in so that this module
    does not import the one that imports it) checks the caller's key before a request's body is judged."""

    @app.exception_handler(ServiceError)
    async def _service(request: Request, exc: ServiceError) -> Response:
        _note(request, exc.kind)
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        if getattr(request.state, "caller", None) is not None:  # a protected path: who asks comes first
            try:
                authenticate(request)  # FastAPI parses a JSON body before it checks the key
            except ServiceError as refused:
                _note(request, refused.kind)
                return error_response(refused)
        _note(request, "validation")
        status, issues = _validation_issues(exc.errors())
        return outcome(status, issues)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:  # Starlette's Allow names only the first route of the path
            allow = ", ".join(allowed_methods(request))
            if request.method == "OPTIONS":  # RFC 9110 9.3.7: what the resource supports
                return Response(status_code=204, headers={"Allow": allow})
            headers = {**(headers or {}), "Allow": allow}
        _note(request, _CODES.get(exc.status_code, "http"))
        message = "no such endpoint (see /openapi.json)" if exc.status_code == 404 else str(exc.detail)
        return outcome(exc.status_code, [issue(message, code=_CODES.get(exc.status_code, "processing"))], headers)

    @app.exception_handler(PatientNotFound)
    async def _not_found(request: Request, exc: PatientNotFound) -> Response:
        _note(request, "patient-not-found")
        return outcome(404, [issue(str(exc), code="not-found", expression=["patient"])])

    @app.exception_handler(FhirUnavailable)
    async def _unavailable(request: Request, exc: FhirUnavailable) -> Response:
        _note(request, "fhir-unavailable")
        retry_after = str(request.app.state.settings.retry_after_seconds)
        return outcome(503, [issue(str(exc), code="transient")], {"Retry-After": retry_after})

    @app.exception_handler(UpstreamError)
    async def _upstream(request: Request, exc: UpstreamError) -> Response:
        _note(request, "fhir-refused")
        return outcome(502, [issue(str(exc), code="transient")])

    @app.exception_handler(EvaluationError)
    async def _evaluation(request: Request, exc: EvaluationError) -> Response:
        _note(request, "evaluation")
        return outcome(422, [issue(str(exc), code="processing", expression=list(exc.expression))])


def allowed_methods(request: Request) -> list[str]:
    """The methods some route of the app answers at the request's path (HEAD with GET), and OPTIONS: each method
    tried against the routes as the router would (an included router matches for its own routes)."""
    from starlette.routing import Match

    routes = request.app.router.routes
    found = [m for m in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
             if any(r.matches({**request.scope, "method": m})[0] is Match.FULL for r in routes)]
    return [*found, "OPTIONS"]


async def answer_bug(scope: dict[str, Any], receive: Any, send: Any, exc: Exception, *, started: bool) -> None:
    """The last resort for an exception no handler took (``AccessMiddleware`` calls it): a 500 OperationOutcome,
    and one log line with the exception's type and the route. Not raised on: Starlette's own last resort would,
    and the server would log the traceback with the exception's message. ``started``: the answer is under way;
    it ends here, cut short."""
    route = getattr(scope.get("route"), "path", None) or "(no route)"
    log.error("internal error in %s %s: %s", scope["method"], route, type(exc).__name__)
    scope.setdefault("state", {})["error_kind"] = "internal"
    if not started:
        bug = outcome(500, [issue("internal error (logged); the request may be retried", code="exception")])
        await bug(scope, receive, send)
