"""The CDS Hooks 2.0 endpoints: ``GET /cds-services`` (discovery) and ``POST /cds-services/{id}`` (``patient-view``).

Every request, discovery included, is authenticated by the CDS client's JWT first (``auth.py``; 401 with an
OperationOutcome when any check fails), then the body is judged. A ``patient-view`` call reads the patient
(``record.py``: a full read where allowed, else the prefetch), screens them for every configured study and answers
with the cards of ``cards.py``. Nothing is written to the feed or the FHIR server (a prefetch is not a record to
publish); every call is audited (client name, patient, status).
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from fastapi import APIRouter, FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fhir_adapter.service.cds_hooks.auth import CdsAuthError, CdsCaller, JwtVerifier
from fhir_adapter.service.cds_hooks.cards import response_card, screening_card
from fhir_adapter.service.cds_hooks.prefetch import templates
from fhir_adapter.service.cds_hooks.record import read_patient
from fhir_adapter.service.cds_hooks.replay import ReplayGuard
from fhir_adapter.service.errors import JSONResponse, ServiceError, documented
from fhir_adapter.service.evaluate import FHIR_ID
from fhir_adapter.service.store import utcnow

SERVICE_ID = "anti-mda5-dm-trials"
HOOK = "patient-view"
ERRORS: dict[int | str, dict[str, Any]] = documented(400, 401, 403, 404, 412, 422)

router = APIRouter(prefix="/cds-services", tags=["cds-hooks"], responses=ERRORS)


class FhirAuthorization(BaseModel):
    """An access token the CDS client issued for this call (CDS Hooks 2.0, "FHIR Resource Access")."""

    model_config = ConfigDict(extra="allow")

    access_token: str = Field(min_length=1, max_length=16384)
    token_type: str = Field(pattern=r"^[Bb]earer$")
    expires_in: int
    scope: str
    subject: str


class PatientViewContext(BaseModel):
    model_config = ConfigDict(extra="allow")

    userId: str = Field(min_length=1, max_length=256)
    patientId: str = Field(pattern=rf"^{FHIR_ID}$")
    encounterId: str | None = None


class HookRequest(BaseModel):
    """A ``patient-view`` call (CDS Hooks 2.0, "Calling a CDS Service")."""

    model_config = ConfigDict(extra="allow")

    hook: Literal["patient-view"]
    hookInstance: str = Field(min_length=1, max_length=128)
    fhirServer: str | None = Field(None, pattern=r"^https?://", max_length=2048)
    fhirAuthorization: FhirAuthorization | None = None
    context: PatientViewContext
    prefetch: dict[str, Any] | None = None


class CdsService(BaseModel):
    """One service of the discovery answer (CDS Hooks 2.0, "Discovery")."""

    model_config = ConfigDict(extra="allow")

    hook: Literal["patient-view"]
    id: str
    title: str
    description: str
    prefetch: dict[str, str]
    usageRequirements: str | None = None


class Discovery(BaseModel):
    services: list[CdsService]


class Card(BaseModel):
    """A card (CDS Hooks 2.0, "Card Attributes"); the service sends indicator ``info`` and no links."""

    model_config = ConfigDict(extra="allow")

    uuid: str | None = None
    summary: str = Field(max_length=140)
    detail: str | None = None
    indicator: Literal["info", "warning", "critical"]
    source: dict[str, Any]


class CardsAnswer(BaseModel):
    cards: list[Card]


def install(app: FastAPI) -> None:
    """Mount the endpoints on ``app`` (its ``state`` has ``settings``, ``store``, ``evaluator``, ``audit``)."""
    settings = app.state.settings.cds_hooks
    app.state.cds_verifier = JwtVerifier(settings, ReplayGuard(app.state.store.engine))
    app.include_router(router)


def _services(request: Request) -> list[dict[str, Any]]:
    studies = list({s.id: s for s in request.app.state.evaluator.studies().values()}.values())
    reads: list[str] = [t for s in studies for t in sorted(s.entry_reads)]
    names = ", ".join(f"{s.id} ({s.title})" for s in studies)
    return [{"hook": HOOK, "id": SERVICE_ID, "title": "Anti-MDA5 dermatomyositis trials",
             "description": f"When a patient's chart is opened: a card when they may be a candidate for {names} "
                            "(what is met, what is missing, when an exclusion ends), or a treatment-response "
                            "(TIS) summary for the tofacitinib study; no card otherwise.",
             "prefetch": templates(reads),
             "usageRequirements": "A criterion that rests on the absence of a record is decided only from a full "
                                  "read of the patient: send fhirServer (on the service's allow-list) with "
                                  "fhirAuthorization; from the prefetch alone it stays unknown."}]


async def _caller(request: Request, path: str) -> CdsCaller:
    verifier: JwtVerifier = request.app.state.cds_verifier
    base = request.app.state.settings.cds_hooks.base_url or ""
    try:
        return await asyncio.to_thread(verifier.verify, request.headers.get("authorization"), f"{base}{path}")
    except CdsAuthError as e:
        _audit(request, "anonymous" if not request.headers.get("authorization") else "unknown-cds-client",
               401, None, str(e))
        raise ServiceError(401, str(e), expression=["Authorization"], kind="unauthenticated",
                           headers={"WWW-Authenticate": 'Bearer realm="fhir-adapter cds-services", '
                                                        'error="invalid_token"'}) from None


def _audit(request: Request, actor: str, status: int, patient: str | None, detail: str | None) -> None:
    action = f"{request.method} {request.url.path if request.url.path == '/cds-services' else '/cds-services/{id}'}"
    request.app.state.audit.submit({"at": utcnow(), "actor": actor[:128], "action": action, "patient": patient,
                                    "status_code": status, "detail": detail})


@router.get("", response_model=Discovery,
            summary="CDS Hooks discovery: the services, their hooks and prefetch templates (CDS client JWT)")
async def discovery(request: Request) -> Any:
    caller = await _caller(request, "/cds-services")
    _audit(request, caller.name, 200, None, None)
    return JSONResponse({"services": _services(request)})


def _inline(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with its ``$defs`` put in place of their references (an OpenAPI request body cannot point into
    its own ``$defs``)."""
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return walk(defs[ref.removeprefix("#/$defs/")])
            return {k: walk(v) for k, v in node.items()}
        return [walk(v) for v in node] if isinstance(node, list) else node

    return walk(schema)


HOOK_BODY = {"requestBody": {"required": True,
                             "content": {"application/json": {"schema": _inline(HookRequest.model_json_schema())}}}}


@router.post("/{service_id}", response_model=CardsAnswer, openapi_extra=HOOK_BODY,
             summary="CDS Hooks patient-view: trial cards for the patient whose chart is open "
             "(CDS client JWT)")
async def call(service_id: str, request: Request) -> Any:
    caller = await _caller(request, f"/cds-services/{service_id}")
    if service_id != SERVICE_ID:
        raise ServiceError(404, f"no CDS service {service_id[:64]!r} (see GET /cds-services)", expression=["id"])
    if "results:read" not in caller.scopes:
        raise ServiceError(403, "this CDS client lacks the scope 'results:read'", expression=["Authorization"],
                           kind="forbidden")
    try:
        body = HookRequest.model_validate_json(await request.body())
    except ValidationError as e:
        raise _invalid(e) from None
    if body.fhirAuthorization is not None and not body.fhirServer:
        raise ServiceError(422, "fhirAuthorization needs fhirServer", expression=["fhirServer"])
    patient = body.context.patientId
    request.state.patient = patient
    cards, detail = await asyncio.to_thread(_cards, request, body)
    _audit(request, caller.name, 200, patient, detail)
    return JSONResponse({"cards": cards})


def _cards(request: Request, body: HookRequest) -> tuple[list[dict[str, Any]], str]:
    state = request.app.state
    evaluator = state.evaluator
    patient = body.context.patientId
    studies = list({s.id: s for s in evaluator.studies().values()}.values())
    keys = list(_services(request)[0]["prefetch"])
    read = read_patient(patient, body, evaluator=evaluator, cds=state.settings.cds_hooks, keys=keys)
    if read.record is None:
        raise ServiceError(412, "the patient cannot be read: no Patient in the prefetch and no fhirServer this "
                           "service may read (CDS Hooks: 412 Precondition Failed)", expression=["prefetch"],
                           code="not-found", kind="cds-precondition")
    out, shown = [], []
    kinds = state.settings.cds_hooks.cards
    for st in studies:
        if st.id not in kinds:
            continue
        screen = evaluator.evaluate(st.id, "screening", patient, record=read.record)
        if kinds[st.id] == "response":
            response = evaluator.evaluate(st.id, "response", patient, record=read.record)
            card = response_card(screen, response, st, read=read.label, complete=read.complete, notes=read.notes)
        else:
            card = screening_card(screen, st, read=read.label, complete=read.complete, notes=read.notes)
        if card is not None:
            out.append(card)
            shown.append(st.id)
    detail = f"{'full read' if read.complete else 'prefetch'}; cards: {', '.join(shown) or 'none'}"
    return out, detail


def _invalid(e: ValidationError) -> ServiceError:
    first = e.errors()[0] if e.errors() else {}
    loc = ".".join(str(p) for p in first.get("loc", ())) or "body"
    if first.get("type") == "json_invalid":
        return ServiceError(400, "the request body is not valid JSON", expression=["body"])
    return ServiceError(422, f"body field {loc}: {first.get('msg', 'invalid')}", expression=[loc])
