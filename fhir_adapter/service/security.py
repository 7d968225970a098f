"""Who may call the service: API keys (``Authorization: Bearer KEY`` or ``X-API-Key: KEY``) with scopes.

Keys come from the settings (the environment or the settings file), each as the key or its sha256. Only the
sha256 is kept in memory; a presented key is hashed once and compared with every stored hash in constant time
(``hmac.compare_digest``, no early exit). With no key configured the service starts and refuses every protected
request with 401. The caller's key *name* (never the key) goes to the audit log (see ``access.py``).

Scopes: ``results:read`` (evaluate, the feed), ``jobs:run`` (population screen jobs), ``writeback`` (write
results to the FHIR server), ``metrics:read`` (Prometheus).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from fastapi import Request
from fastapi.security import APIKeyHeader, HTTPBearer

from fhir_adapter.service.errors import ServiceError
from fhir_adapter.service.settings import ApiKey

ANONYMOUS = "anonymous"  # no credential presented
UNKNOWN = "unknown-key"  # a credential that matches no configured key

# for the OpenAPI schema only (the check is ``require``): either header works
bearer_scheme = HTTPBearer(auto_error=False, description="Authorization: Bearer <API key>")
api_key_scheme = APIKeyHeader(name="X-API-Key", auto_error=False, description="the API key")


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    scopes: frozenset[str]


class KeyRing:
    """The configured keys, by sha256."""

    def __init__(self, keys: Iterable[ApiKey]):
        self._keys: list[tuple[bytes, Principal]] = []
        for k in keys:
            digest = bytes.fromhex(k.key_sha256) if k.key_sha256 else _sha256(k.key.get_secret_value())  # type: ignore[union-attr]
            self._keys.append((digest, Principal(k.name, frozenset(k.scopes))))

    def __len__(self) -> int:
        return len(self._keys)

    def identify(self, presented: str) -> Principal | None:
        """The principal whose key is ``presented``, or None. Time does not depend on which key matched."""
        digest = _sha256(presented)
        found = None
        for stored, principal in self._keys:
            if hmac.compare_digest(stored, digest):
                found = principal
        return found


def _sha256(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).digest()


def presented_key(headers: dict[str, str] | object) -> str | None:
    """The key a request presents: ``Authorization: Bearer KEY``, else ``X-API-Key``; None without one."""
    get = headers.get  # type: ignore[attr-defined]
    auth = get("authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    key = get("x-api-key")
    return key.strip() if key and key.strip() else None


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a request comes from: a principal, or why there is none."""

    principal: Principal | None
    presented: bool

    @property
    def name(self) -> str:
        return self.principal.name if self.principal else UNKNOWN if self.presented else ANONYMOUS


def identify(request: Request) -> Caller:
    """The request's caller, computed once per request (``access.py`` does it first for the audit log)."""
    caller = getattr(request.state, "caller", None)
    if caller is None:
        key = presented_key(request.headers)
        caller = Caller(request.app.state.keyring.identify(key) if key else None, key is not None)
        request.state.caller = caller
    return caller


def _challenge(error: str | None = None, scope: str | None = None) -> dict[str, str]:
    value = 'Bearer realm="fhir-adapter"'
    if error:
        value += f', error="{error}"'
    if scope:
        value += f', scope="{scope}"'
    return {"WWW-Authenticate": value}


def authenticate(request: Request) -> Principal:
    """The caller's principal; ServiceError 401 (with a challenge) without a valid key."""
    caller = identify(request)
    if caller.principal is None:
        if not len(request.app.state.keyring):
            message = "no API key is configured on this service; every protected request is refused"
        elif caller.presented:
            message = "the API key is not valid"
        else:
            message = "an API key is required: 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
        raise ServiceError(401, message, expression=["Authorization"], kind="unauthenticated",
                           headers=_challenge("invalid_token" if caller.presented else None))
    return caller.principal


def authorize(request: Request, scope: str) -> Principal:
    """The caller, when it holds ``scope``; else a 401 (no or unknown credential) or 403 (scope missing)."""
    principal = authenticate(request)
    if scope not in principal.scopes:
        raise ServiceError(403, f"this API key lacks the scope {scope!r}", expression=["Authorization"],
                           kind="forbidden", headers=_challenge("insufficient_scope", scope))
    return principal


def require(scope: str) -> Callable[..., Principal]:
    """A FastAPI dependency: the caller must hold ``scope`` (documented in OpenAPI as bearer or X-API-Key)."""
    from fastapi import Security

    def dependency(request: Request, _bearer: object = Security(bearer_scheme),
                   _key: object = Security(api_key_scheme)) -> Principal:
        return authorize(request, scope)

    dependency.__name__ = f"require_{scope.replace(':', '_')}"
    return dependency
