"""Who calls a CDS Hooks endpoint: the CDS client's signed JWT (CDS Hooks 2.0, "Trusting CDS Clients").

Every request, discovery included, carries ``Authorization: Bearer <JWT>``. The JWT is accepted only when: its
header names an asymmetric ``alg`` this service accepts, ``typ`` JWT and a ``kid``; its ``iss`` is a configured
client; the key ``kid`` in that client's JWK Set (its file or URL, or the ``jku`` the header names when that URL is
on the client's ``jku`` list; any other ``jku`` is refused and never fetched) verifies the signature; ``aud`` is this
endpoint's URL (``base_url`` + the path); ``exp`` is not past and not further ahead than ``max_token_seconds``;
``iat`` is not in the future; and ``jti`` was not seen before (``replay.py``). Anything else: ``CdsAuthError``
(the endpoint answers 401 with an OperationOutcome saying which check failed).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any

import jwt
from jwt import PyJWK, PyJWKClient, PyJWKSet

from fhir_adapter.service.cds_hooks.replay import ReplayGuard
from fhir_adapter.service.cds_hooks.settings import CdsClient, CdsHooksSettings


class CdsAuthError(Exception):
    """A CDS Hooks request is not authenticated; the message says which check failed (no token content)."""


@dataclass(frozen=True, slots=True)
class CdsCaller:
    """A verified CDS client."""

    name: str
    iss: str
    scopes: frozenset[str]
    tenant: str | None = None


class JwtVerifier:
    """Verifies CDS clients' JWTs; thread-safe. Key sets from files are read once, from URLs cached."""

    def __init__(self, settings: CdsHooksSettings, replay: ReplayGuard):
        self.settings = settings
        self.replay = replay
        self.clients = {c.iss: c for c in settings.clients}
        self._lock = threading.Lock()
        self._files: dict[str, PyJWKSet] = {}
        self._urls: dict[str, PyJWKClient] = {}

    def verify(self, authorization: str | None, audience: str) -> CdsCaller:
        """The caller a request's ``Authorization`` header proves, for the endpoint at ``audience``."""
        if not self.settings.base_url:
            raise CdsAuthError("CDS Hooks is not configured on this service (setting cds_hooks.base_url)")
        token = _bearer(authorization)
        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise CdsAuthError("the bearer token is not a JWT") from None
        alg = header.get("alg")
        if alg not in self.settings.algorithms:
            raise CdsAuthError(f"JWT alg {str(alg)[:16]!r} is not accepted (asymmetric: "
                               f"{', '.join(self.settings.algorithms)})")
        if str(header.get("typ", "")).upper() != "JWT":
            raise CdsAuthError("JWT header typ must be 'JWT'")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise CdsAuthError("JWT header has no kid")
        iss = claims.get("iss")
        client = self.clients.get(iss) if isinstance(iss, str) else None
        if client is None:
            raise CdsAuthError("JWT iss is not a configured CDS client")
        key = self._key(client, header.get("jku"), kid)
        leeway = self.settings.leeway_seconds
        try:
            verified = jwt.decode(token, key.key, algorithms=[alg], audience=audience, issuer=client.iss,
                                  leeway=leeway, options={"require": ["iss", "aud", "exp", "iat", "jti"]})
        except jwt.InvalidSignatureError:
            raise CdsAuthError("JWT signature does not verify with the client's key") from None
        except jwt.ExpiredSignatureError:
            raise CdsAuthError("JWT has expired (exp)") from None
        except jwt.InvalidAudienceError:
            raise CdsAuthError(f"JWT aud is not this endpoint ({audience})") from None
        except jwt.ImmatureSignatureError:
            raise CdsAuthError("JWT is not valid yet (iat or nbf in the future)") from None
        except jwt.MissingRequiredClaimError as e:
            raise CdsAuthError(f"JWT has no {e.claim} claim") from None
        except jwt.PyJWTError as e:
            raise CdsAuthError(f"JWT refused: {type(e).__name__}") from None
        exp = verified["exp"]
        if not isinstance(exp, int | float) or exp > time.time() + self.settings.max_token_seconds + leeway:
            raise CdsAuthError(f"JWT exp is more than {self.settings.max_token_seconds} s ahead")
        jti = verified["jti"]
        if not isinstance(jti, str) or not jti or len(jti) > 256:
            raise CdsAuthError("JWT jti must be a non-empty string")
        if not self.replay.first_use(client.iss, jti, int(exp) + leeway):
            raise CdsAuthError("JWT jti was used before (replay)")
        tenant = verified.get("tenant")
        return CdsCaller(client.name, client.iss, frozenset(client.scopes), tenant if isinstance(tenant, str)
                         else None)

    def _key(self, client: CdsClient, jku: Any, kid: str) -> PyJWK:
        """The key ``kid`` of the client's key set: the ``jku`` one (when allowed), else its file or URL."""
        try:
            if jku is not None:
                if not isinstance(jku, str) or jku.rstrip("/") not in client.jku:
                    raise CdsAuthError("JWT jku is not on this client's allow-list (cds_hooks.clients[].jku)")
                return self._from_url(jku).get_signing_key(kid)
            if client.jwks_file is not None:
                return self._from_file(client)[kid]
            if client.jwks_url is not None:
                return self._from_url(client.jwks_url).get_signing_key(kid)
        except KeyError:
            raise CdsAuthError("no key with the JWT's kid in the client's JWK Set") from None
        except jwt.PyJWKClientConnectionError:
            raise CdsAuthError("the client's JWK Set URL cannot be read") from None
        except jwt.PyJWKClientError:
            raise CdsAuthError("no key with the JWT's kid in the client's JWK Set") from None
        raise CdsAuthError("JWT has no jku and this client has no configured JWK Set")

    def _from_file(self, client: CdsClient) -> PyJWKSet:
        with self._lock:
            keys = self._files.get(client.iss)
            if keys is None:
                path = client.jwks_file
                try:
                    keys = PyJWKSet.from_dict(json.loads(path.read_bytes()))  # type: ignore[union-attr]
                except (OSError, ValueError, jwt.PyJWTError) as e:
                    raise CdsAuthError(f"the JWK Set of CDS client {client.name} cannot be read "
                                       f"({type(e).__name__})") from None
                self._files[client.iss] = keys
            return keys

    def _from_url(self, url: str) -> PyJWKClient:
        with self._lock:
            fetcher = self._urls.get(url)
            if fetcher is None:
                lifespan = max(self.settings.jwks_cache_seconds, 1)
                fetcher = self._urls[url] = PyJWKClient(url, cache_jwk_set=True, lifespan=lifespan, timeout=5)
            return fetcher


def _bearer(authorization: str | None) -> str:
    if not authorization:
        raise CdsAuthError("a CDS client JWT is required: 'Authorization: Bearer <JWT>'")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise CdsAuthError("a CDS client JWT is required: 'Authorization: Bearer <JWT>'")
    return value.strip()
