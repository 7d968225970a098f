"""The service's OpenAPI document as the service behaves, and its documentation pages without the internet.

``install(app)`` (called once by ``create_app``):

- ``/openapi.json``: FastAPI's document, completed: every error an operation can answer with is the
  ``OperationOutcome`` the service sends, as ``application/fhir+json`` (FastAPI documents a 422 as its own
  ``HTTPValidationError`` in ``application/json``; the service never sends that); an operation that takes
  parameters documents 422, one with a JSON body 400 too (a body that is not JSON), a protected one
  (``/v1/...``, ``/metrics``) 401 and 403. What is particular to a route (404, 409, 429, 502, 503) it declares
  itself (``errors.documented``). Built once, then served from memory.
- ``/docs`` (Swagger UI) and ``/redoc`` (ReDoc) from the assets the ``fastapi-offline`` package ships (Swagger UI:
  Apache-2.0, ReDoc: MIT), under ``/docs-assets``: no URL of the pages leaves the service (favicon included), so
  they work on a hospital network without internet. ReDoc's bundle loads one image from its vendor's CDN (the
  "API docs by Redocly" logo): the service sends the bundle with that one URL replaced by an empty inline image.
  The app is created with ``docs_url=None, redoc_url=None``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic.json_schema import models_json_schema

from fhir_adapter.service.access import protected
from fhir_adapter.service.errors import FHIR_JSON, documented
from fhir_adapter.service.schemas import OperationOutcome

ASSETS = "/docs-assets"
DOCS, REDOC, OAUTH2_REDIRECT = "/docs", "/redoc", "/docs/oauth2-redirect"
_FASTAPI_VALIDATION = ("HTTPValidationError", "ValidationError")
_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
REDOC_JS = "redoc.standalone.js"
_REDOC_CDN_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"
_EMPTY_IMAGE = b"data:image/gif;base64,R0lGODlhAQABAAAAACw="


def assets_dir() -> Path:
    """The folder of Swagger UI's and ReDoc's files (``fastapi-offline``'s, installed with the service)."""
    import fastapi_offline

    return Path(fastapi_offline.__file__).parent / "static"


def install(app: FastAPI) -> None:
    """The completed OpenAPI document and the offline documentation pages on ``app``."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version=app.version, openapi_version=app.openapi_version,
                              description=app.description, routes=app.routes, tags=app.openapi_tags,
                              servers=app.servers)
            app.openapi_schema = complete(doc)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    _docs(app)


def complete(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` with the errors as sent (see the module's docstring)."""
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for name in _FASTAPI_VALIDATION:
        schemas.pop(name, None)
    _, defs = models_json_schema([(OperationOutcome, "serialization")], ref_template="#/components/schemas/{model}")
    schemas.update(defs.get("$defs", {}))
    for path, item in doc.get("paths", {}).items():
        for method in _METHODS:
            op = item.get(method)
            if op is None:
                continue
            responses = op.setdefault("responses", {})
            wanted: list[int] = []
            if op.get("parameters") or op.get("requestBody"):
                wanted.append(422)
            if op.get("requestBody"):
                wanted.append(400)
            if protected(path):
                wanted += [401, 403]
            for status, response in documented(*wanted).items():
                if str(status) not in responses or _is_fastapi_validation(responses[str(status)]):
                    responses[str(status)] = response
            for status, response in responses.items():
                if status[0] in "45" and "content" in response:  # every error is an OperationOutcome
                    response["content"] = {FHIR_JSON: response["content"].get(FHIR_JSON)
                                           or {"schema": {"$ref": "#/components/schemas/OperationOutcome"}}}
            op["responses"] = dict(sorted(responses.items()))
    return doc


def _is_fastapi_validation(response: dict[str, Any]) -> bool:
    refs = [m.get("schema", {}).get("$ref", "") for m in response.get("content", {}).values()]
    return any(r.endswith(_FASTAPI_VALIDATION) for r in refs)


def _docs(app: FastAPI) -> None:
    redoc_js: list[bytes] = []

    @app.get(f"{ASSETS}/{REDOC_JS}", include_in_schema=False)
    async def redoc_bundle() -> Response:
        if not redoc_js:
            redoc_js.append((assets_dir() / REDOC_JS).read_bytes().replace(_REDOC_CDN_LOGO, _EMPTY_IMAGE))
        return Response(redoc_js[0], media_type="text/javascript",
                        headers={"Cache-Control": "public, max-age=86400"})

    app.mount(ASSETS, StaticFiles(directory=assets_dir()), name="docs-assets")
    parameters = {**(app.swagger_ui_parameters or {}), "validatorUrl": None}  # no call to swagger.io

    @app.get(DOCS, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=f"{root}{OAUTH2_REDIRECT}", swagger_js_url=f"{root}{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS}/swagger-ui.css", swagger_favicon_url=f"{root}{ASSETS}/favicon.png",
            swagger_ui_parameters=parameters)

    @app.get(OAUTH2_REDIRECT, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(REDOC, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} - ReDoc",
                              redoc_js_url=f"{root}{ASSETS}/{REDOC_JS}",
                              redoc_favicon_url=f"{root}{ASSETS}/favicon.png", with_google_fonts=False)
