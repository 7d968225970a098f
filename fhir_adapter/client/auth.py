"""Authorization for the FHIR client: a fixed bearer token, or SMART Backend Services.

SMART Backend Services (HL7 SMART App Launch 2.x, "Backend Services") is how Epic, Cerner/Oracle Health
and most hospital servers let a system client in without a user: the adapter signs a short JWT with its
private key (whose public key the hospital registered), trades it at the token endpoint for an access
token (client-credentials grant), and sends that token until shortly before it expires.

The token request is retried with the client's ``RetryPolicy`` when it fails the way a busy or restarting
server fails (HTTP 408, 429, 5xx, a connection error or timeout, a 200 whose body is cut short or not JSON): a
POST of a client assertion is safe to repeat, each attempt with a new assertion (a new ``jti``). A refusal
(400, 401: the credentials, the scope) is never retried and raises ``AuthError``; an endpoint still failing
after the last attempt raises ``FhirError`` with its status (the server is unavailable, not the adapter refused).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import jwt
import requests
from requests.auth import AuthBase

from fhir_adapter.client.errors import AuthError
from fhir_adapter.client.retry import RETRY_STATUSES, RetryPolicy, parse_retry_after, transient
from fhir_adapter.errors import FhirError

log = logging.getLogger("fhir_adapter.client")

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
T = TypeVar("T")
ONCE = RetryPolicy(max_attempts=1)  # an auth not bound to a client (and given no policy) tries once


class _Transient(Exception):
    """One attempt failed the way a busy or restarting server fails: worth another."""

    def __init__(self, reason: str, status: int | None = None, retry_after: float | None = None,
                 outcome: str = "") -> None:
        super().__init__(reason)
        self.reason, self.status, self.retry_after, self.outcome = reason, status, retry_after, outcome


def _retrying(policy: RetryPolicy, label: str, attempt: Callable[[], T]) -> T:
    """``attempt()`` until it returns, raises anything but ``_Transient``, or the policy's attempts run out: then
    ``FhirError`` with the last failure's reason and status."""
    n = 0
    while True:
        n += 1
        try:
            return attempt()
        except _Transient as exc:
            if n >= policy.max_attempts:
                tries = f" ({n} attempts)" if n > 1 else ""
                raise FhirError(f"{exc.reason}{tries}", request=label, status=exc.status,
                                outcome=exc.outcome) from exc.__cause__
            wait = policy.delay(n, exc.retry_after)
            log.warning("%s: %s; retry %d of %d in %.1f s", label, exc.reason, n, policy.max_attempts - 1, wait)
            policy.sleep(wait)


def _text(response: requests.Response) -> str:
    try:
        return response.text[:200] if response.text else ""
    except requests.RequestException:
        return ""


class BearerToken(AuthBase):
    """A fixed access token (``Authorization: Bearer ...``), e.g. one issued by hand for a test server."""

    def __init__(self, token: str) -> None:
        self.token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.token}"
        return request


class TokenFile(AuthBase):
    """A bearer token read from a file (``--token-file``): kept off the command line, where other users of the
    machine could see it, and read again when the file changes (a token renewed by another process during a long
    run is used from the next request). An unreadable or empty file raises ``ConfigError`` naming it."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self.token = self._read()

    def _read(self) -> str:
        from fhir_adapter.errors import ConfigError

        try:
            stat = self.path.stat()
            token = self.path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"token file {self.path}: cannot read it ({exc})") from None
        if not token or any(c.isspace() for c in token):
            raise ConfigError(f"token file {self.path}: expected one bearer token (no spaces or line breaks "
                              "inside it)" if token else f"token file {self.path}: empty")
        if stat.st_mode & 0o077:
            log.warning("token file %s can be read by other users (mode %o); chmod 600 it", self.path,
                        stat.st_mode & 0o777)
        self._stamp = (stat.st_mtime_ns, stat.st_size)
        return token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        from fhir_adapter.errors import ConfigError

        with self._lock:
            try:
                stat = self.path.stat()
                if (stat.st_mtime_ns, stat.st_size) != self._stamp:
                    self.token = self._read()
            except (OSError, ConfigError) as exc:  # being replaced, or half written: the token read last stands
                log.info("token file %s: %s; the token read before is sent", self.path, exc)
        request.headers["Authorization"] = f"Bearer {self.token}"
        return request


def smart_configuration(base_url: str, session: requests.Session | None = None,
                        timeout: float | tuple[float, float] = (5, 30),
                        retry: RetryPolicy | None = None) -> dict[str, Any]:
    """The server's ``.well-known/smart-configuration`` document (a failure that may pass is retried with
    ``retry``; none given: one attempt)."""
    url = f"{base_url.rstrip('/')}/.well-known/smart-configuration"
    label = f"GET {url}"

    def attempt() -> dict[str, Any]:
        try:
            response = (session or requests).get(url, headers={"Accept": "application/json"}, timeout=timeout)
        except requests.RequestException as exc:
            if transient(exc):
                raise _Transient(f"cannot read the SMART configuration ({exc})") from exc
            raise AuthError(f"cannot read the SMART configuration ({exc})", request=label) from exc
        status = response.status_code
        if status in RETRY_STATUSES:
            raise _Transient("the SMART configuration is unavailable", status,
                             parse_retry_after(response.headers.get("Retry-After")), _text(response))
        if status != 200:
            raise AuthError("the server publishes no SMART configuration", request=label, status=status)
        try:
            config = response.json()
        except ValueError as exc:
            raise _Transient("the SMART configuration is not JSON (cut short?)", status) from exc
        if not isinstance(config, dict) or not isinstance(config.get("token_endpoint"), str):
            raise AuthError("the SMART configuration has no token_endpoint", request=label)
        return config

    return _retrying(retry or ONCE, label, attempt)


class SmartBackendAuth(AuthBase):
    """SMART Backend Services: a client-credentials grant with a signed JWT assertion (RS384 or ES384).

    ``private_key`` is a PEM (str/bytes) or a JWK (dict or JSON text); ``kid`` defaults to the JWK's
    ``kid``. ``token_url`` None: discovered from ``{base}/.well-known/smart-configuration`` when the
    ``FhirClient`` binds this auth to its base URL. The token is cached and fetched again ``margin``
    seconds before it expires; ``clock`` is injectable for tests. ``retry``: the policy of the token requests
    (default: the ``FhirClient``'s, once bound; else one attempt).
    """

    def __init__(self, token_url: str | None, client_id: str, private_key: str | bytes | dict[str, Any], *,
                 alg: str = "RS384", kid: str | None = None, scope: str = "system/*.read",
                 session: requests.Session | None = None, timeout: float | tuple[float, float] = (5, 30),
                 margin: float = 60.0, clock: Callable[[], float] = time.time,
                 retry: RetryPolicy | None = None) -> None:
        if alg not in ("RS384", "ES384", "RS256", "ES256"):
            raise ValueError(f"unsupported signing algorithm {alg!r} (SMART uses RS384 or ES384)")
        self.token_url = token_url
        self.client_id = client_id
        self.alg = alg
        self.scope = scope
        self.timeout = timeout
        self.margin = margin
        self.clock = clock
        self.retry = retry
        self._key, jwk_kid = _signing_key(private_key, alg)
        self.kid = kid or jwk_kid
        self._session = session
        self._base_url: str | None = None
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = threading.Lock()
        self.token_requests = 0  # how many tokens were fetched (for logs and tests)

    def bind(self, base_url: str, session: requests.Session, retry: RetryPolicy | None = None) -> None:
        """Called by ``FhirClient``: the base URL to discover the token endpoint from, its session and its retry
        policy (used for the token requests unless this auth was given its own)."""
        self._base_url = base_url
        self._session = self._session or session
        self.retry = self.retry or retry

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.access_token()}"
        return request

    def invalidate(self) -> None:
        """Forget the cached token (the server said 401): the next request fetches a new one."""
        with self._lock:
            self._token = None
            self._expires_at = 0.0

    def access_token(self) -> str:
        """The cached token, or a new one when it is missing or within ``margin`` seconds of expiry."""
        with self._lock:
            if self._token is None or self.clock() >= self._expires_at - self.margin:
                self._token, self._expires_at = self._fetch()
            return self._token

    def client_assertion(self) -> str:
        """The signed JWT: iss = sub = client_id, aud = token URL, a random jti, exp 5 minutes ahead (the max).

        No ``iat``/``nbf``: SMART does not require them, and a token server whose clock runs a little
        behind ours would reject the assertion as "not yet valid".
        """
        claims = {"iss": self.client_id, "sub": self.client_id, "aud": self._token_url(),
                  "jti": uuid.uuid4().hex, "exp": int(self.clock()) + 300}
        headers = {"typ": "JWT", **({"kid": self.kid} if self.kid else {})}
        return jwt.encode(claims, self._key, algorithm=self.alg, headers=headers)

    def _token_url(self) -> str:
        if self.token_url is None:
            if self._base_url is None:
                raise AuthError("no token URL given and no FHIR base URL to discover it from")
            self.token_url = smart_configuration(self._base_url, self._session, self.timeout,
                                                 self.retry)["token_endpoint"]
        return self.token_url

    def _fetch(self) -> tuple[str, float]:
        url = self._token_url()
        return _retrying(self.retry or ONCE, f"POST {url}", lambda: self._fetch_once(url))

    def _fetch_once(self, url: str) -> tuple[str, float]:
        """One token request, with a new client assertion. ``_Transient`` when it failed as a busy server fails."""
        form = {"grant_type": "client_credentials", "scope": self.scope,
                "client_assertion_type": ASSERTION_TYPE, "client_assertion": self.client_assertion()}
        label = f"POST {url}"
        started = self.clock()
        try:
            response = (self._session or requests).post(url, data=form, headers={"Accept": "application/json"},
                                                        timeout=self.timeout)
        except requests.RequestException as exc:
            if transient(exc):
                raise _Transient(f"cannot reach the token endpoint ({exc})") from exc
            raise AuthError(f"cannot reach the token endpoint ({exc})", request=label) from exc
        self.token_requests += 1
        if response.status_code in RETRY_STATUSES:
            raise _Transient("the token endpoint is unavailable", response.status_code,
                             parse_retry_after(response.headers.get("Retry-After")), _text(response))
        try:
            body = response.json()
        except (ValueError, requests.RequestException):
            body = None
        if response.status_code == 200 and not isinstance(body, dict):
            raise _Transient("the token endpoint's answer cannot be read (cut short or not JSON)", 200)
        if response.status_code != 200 or not isinstance(body, dict) or not body.get("access_token"):
            error = body.get("error", "") if isinstance(body, dict) else ""
            description = body.get("error_description", "") if isinstance(body, dict) else ""
            text = ": ".join(t for t in (error, description) if t) or (response.text[:200] if response.text else "")
            raise AuthError("the token endpoint refused the adapter's credentials", request=label,
                            status=response.status_code, outcome=text)
        try:
            lifetime = float(body.get("expires_in", 300))  # SMART recommends <= 5 min; absent: assume that
        except (TypeError, ValueError):
            lifetime = 300.0
        return str(body["access_token"]), started + lifetime


def _signing_key(private_key: str | bytes | dict[str, Any], alg: str) -> tuple[Any, str | None]:
    """The key object to sign with, and the JWK's ``kid`` when the key came as a JWK."""
    if isinstance(private_key, bytes):
        private_key = private_key.decode()
    if isinstance(private_key, str) and private_key.lstrip().startswith("{"):
        private_key = json.loads(private_key)
    if isinstance(private_key, dict):
        try:
            jwk = jwt.PyJWK(private_key, algorithm=alg)
        except jwt.PyJWTError as exc:
            raise ValueError(f"the private JWK cannot sign {alg}: {exc}") from exc
        return jwk.key, private_key.get("kid")
    return private_key, None
