"""SMART Backend Services with real keys: a token endpoint double verifies the signed client assertion
with the public key before issuing a token, the way Epic's and Cerner's token endpoints do."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from urllib.parse import parse_qs

import jwt
import pytest
import requests
import responses
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from fhir_adapter.client import AuthError, BearerToken, FhirClient, RetryPolicy, SmartBackendAuth
from fhir_adapter.errors import FhirError

BASE = "http://ehr.test/fhir"
TOKEN_URL = "http://ehr.test/oauth2/token"
CLIENT_ID = "fhir-adapter-test"
PATIENT = {"resourceType": "Patient", "id": "1"}


def pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


class Clock:
    def __init__(self) -> None:
        self.now = time.time()  # real time: the verifier checks iat and exp against its own clock

    def __call__(self) -> float:
        return self.now


class TokenEndpoint:
    """Verifies each client assertion like a real authorization server; issues numbered tokens."""

    def __init__(self, public_key: object, alg: str, clock: Clock, expires_in: int = 300) -> None:
        self.public_key, self.alg, self.clock, self.expires_in = public_key, alg, clock, expires_in
        self.issued: list[str] = []
        self.jtis: set[str] = set()
        self.headers: list[dict] = []

    def __call__(self, request: requests.PreparedRequest) -> tuple[int, dict, str]:
        form = {k: v[0] for k, v in parse_qs(request.body).items()}  # type: ignore[arg-type]
        assert form["grant_type"] == "client_credentials"
        assert form["scope"] == "system/*.read"
        assert form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        assertion = form["client_assertion"]
        self.headers.append(jwt.get_unverified_header(assertion))
        try:
            claims = jwt.decode(assertion, self.public_key, algorithms=[self.alg], audience=TOKEN_URL,
                                issuer=CLIENT_ID, options={"require": ["iss", "sub", "aud", "exp", "jti"]})
        except jwt.PyJWTError as exc:
            return 401, {}, json.dumps({"error": "invalid_client", "error_description": str(exc)})
        assert claims["sub"] == CLIENT_ID
        assert claims["exp"] <= self.clock() + 300 and claims["exp"] > self.clock()
        assert claims["jti"] not in self.jtis  # never replayed
        self.jtis.add(claims["jti"])
        token = f"token-{len(self.issued) + 1}"
        self.issued.append(token)
        return 200, {}, json.dumps({"access_token": token, "token_type": "bearer",
                                    "expires_in": self.expires_in, "scope": "system/*.read"})


def fhir_echo(valid: Callable[[], set[str]]) -> Callable[[requests.PreparedRequest], tuple[int, dict, str]]:
    """A FHIR endpoint that accepts only the tokens in ``valid()``."""

    def handler(request: requests.PreparedRequest) -> tuple[int, dict, str]:
        auth = request.headers.get("Authorization", "")
        if auth.removeprefix("Bearer ") not in valid():
            return 401, {}, json.dumps({"resourceType": "OperationOutcome",
                                        "issue": [{"severity": "error", "code": "login",
                                                   "diagnostics": "token expired"}]})
        return 200, {}, json.dumps(PATIENT)

    return handler


@pytest.mark.parametrize("alg", ["RS384", "ES384"])
@responses.activate
def test_token_is_fetched_once_and_cached(alg: str, rsa_key, ec_key) -> None:  # type: ignore[no-untyped-def]
    key = rsa_key if alg == "RS384" else ec_key
    clock = Clock()
    endpoint = TokenEndpoint(key.public_key(), alg, clock)
    responses.add_callback(responses.POST, TOKEN_URL, callback=endpoint)
    responses.add_callback(responses.GET, f"{BASE}/Patient/1", callback=fhir_echo(lambda: set(endpoint.issued)))
    auth = SmartBackendAuth(TOKEN_URL, CLIENT_ID, pem(key), alg=alg, kid="key-1", clock=clock)
    client = FhirClient(BASE, auth=auth)
    for _ in range(3):
        assert client.read("Patient", "1") == PATIENT
    assert endpoint.issued == ["token-1"]
    assert endpoint.headers[0] == {"alg": alg, "typ": "JWT", "kid": "key-1"}
    assert all(c.request.headers.get("Authorization") == "Bearer token-1"
               for c in responses.calls if c.request.url.startswith(BASE))


@responses.activate
def test_token_is_refreshed_before_expiry(rsa_key) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    endpoint = TokenEndpoint(rsa_key.public_key(), "RS384", clock, expires_in=300)
    responses.add_callback(responses.POST, TOKEN_URL, callback=endpoint)
    auth = SmartBackendAuth(TOKEN_URL, CLIENT_ID, pem(rsa_key), clock=clock, margin=60)
    assert auth.access_token() == "token-1"
    clock.now += 239  # 61 s left: still good
    assert auth.access_token() == "token-1"
    clock.now += 1  # 60 s left: fetch a new one before it can expire mid-request
    assert auth.access_token() == "token-2"
    assert auth.token_requests == 2


@responses.activate
def test_401_gets_one_fresh_token_and_a_free_retry(rsa_key) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    endpoint = TokenEndpoint(rsa_key.public_key(), "RS384", clock)
    responses.add_callback(responses.POST, TOKEN_URL, callback=endpoint)
    # the server revoked token-1 early (Epic does this when a client's key is rotated)
    responses.add_callback(responses.GET, f"{BASE}/Patient/1", callback=fhir_echo(lambda: set(endpoint.issued[1:])))
    waits: list[float] = []
    client = FhirClient(BASE, auth=SmartBackendAuth(TOKEN_URL, CLIENT_ID, pem(rsa_key), clock=clock),
                        retry=RetryPolicy(max_attempts=1, sleep=waits.append))
    assert client.read("Patient", "1") == PATIENT  # with max_attempts=1: the re-auth retry is free
    assert endpoint.issued == ["token-1", "token-2"] and waits == []


@responses.activate
def test_second_401_is_an_auth_error(rsa_key) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    endpoint = TokenEndpoint(rsa_key.public_key(), "RS384", clock)
    responses.add_callback(responses.POST, TOKEN_URL, callback=endpoint)
    responses.add_callback(responses.GET, f"{BASE}/Patient/1", callback=fhir_echo(set))
    client = FhirClient(BASE, auth=SmartBackendAuth(TOKEN_URL, CLIENT_ID, pem(rsa_key), clock=clock))
    with pytest.raises(AuthError) as err:
        client.read("Patient", "1")
    assert err.value.status == 401 and err.value.outcome == "token expired"
    assert len(endpoint.issued) == 2  # one re-auth only, not a loop


@responses.activate
def test_wrong_key_is_refused_with_error_description(rsa_key) -> None:  # type: ignore[no-untyped-def]
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    clock = Clock()
    responses.add_callback(responses.POST, TOKEN_URL, callback=TokenEndpoint(rsa_key.public_key(), "RS384", clock))
    auth = SmartBackendAuth(TOKEN_URL, CLIENT_ID, pem(other), clock=clock)
    with pytest.raises(AuthError) as err:
        auth.access_token()
    assert err.value.status == 401
    assert err.value.outcome == "invalid_client: Signature verification failed"


@responses.activate
def test_token_endpoint_failures() -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    auth = SmartBackendAuth(TOKEN_URL, CLIENT_ID, pem(key), alg="ES384")
    responses.post(TOKEN_URL, status=400, json={"error": "invalid_scope",
                                                "error_description": "scope system/*.read not granted"})
    with pytest.raises(AuthError, match=r"invalid_scope: scope system/\*\.read not granted"):
        auth.access_token()
    responses.replace(responses.POST, TOKEN_URL, status=500, body="<html>oops</html>")
    with pytest.raises(FhirError) as err:  # the endpoint is unavailable: not a refusal of the credentials
        auth.access_token()
    assert not isinstance(err.value, AuthError)
    assert err.value.status == 500 and "oops" in err.value.outcome and "token endpoint is unavailable" in str(err.value)
    responses.replace(responses.POST, TOKEN_URL, status=200, json={"token_type": "bearer"})
    with pytest.raises(AuthError):  # 200 without an access_token
        auth.access_token()
    responses.replace(responses.POST, TOKEN_URL, body=requests.exceptions.ConnectTimeout("slow"))
    with pytest.raises(FhirError, match="cannot reach the token endpoint"):
        auth.access_token()


def jtis() -> list[str]:
    """The ``jti`` of every client assertion POSTed so far."""
    return [jwt.decode(parse_qs(c.request.body)["client_assertion"][0], options={"verify_signature": False})["jti"]
            for c in responses.calls if c.request.method == "POST"]


@responses.activate
def test_a_busy_token_endpoint_is_asked_again_with_a_new_assertion(rsa_key) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    endpoint = TokenEndpoint(rsa_key.public_key(), "RS384", clock)
    responses.post(TOKEN_URL, status=503, headers={"Retry-After": "2"}, body="maintenance")
    responses.post(TOKEN_URL, status=429, json={"error": "slow_down"})
    responses.post(TOKEN_URL, body=requests.exceptions.ConnectionError("reset by peer"))
    responses.post(TOKEN_URL, status=200, body='{"access_token": "tok', content_type="application/json")  # cut
    responses.add_callback(responses.POST, TOKEN_URL, callback=endpoint)
    responses.add_callback(responses.GET, f"{BASE}/Patient/1", callback=fhir_echo(lambda: set(endpoint.issued)))
    waits: list[float] = []
    client = FhirClient(BASE, auth=SmartBackendAuth(TOKEN_URL, CLIENT_ID, pem(rsa_key), clock=clock),
                        retry=RetryPolicy(max_attempts=5, sleep=waits.append, random=lambda: 0.5))
    assert client.read("Patient", "1") == PATIENT  # the token endpoint's faults are retried by the client's policy
    assert endpoint.issued == ["token-1"]
    sent = jtis()
    assert len(sent) == 5 and len(set(sent)) == 5  # a new assertion for every attempt
    assert waits[0] == 2.0 and len(waits) == 4  # the endpoint's Retry-After, then the policy's backoff


@pytest.mark.parametrize("status", [400, 401])
@responses.activate
def test_a_refusal_of_the_credentials_is_never_retried(rsa_key, status: int) -> None:  # type: ignore[no-untyped-def]
    responses.post(TOKEN_URL, status=status, json={"error": "invalid_client", "error_description": "unknown key"})
    waits: list[float] = []
    client = FhirClient(BASE, auth=SmartBackendAuth(TOKEN_URL, CLIENT_ID, pem(rsa_key)),
                        retry=RetryPolicy(max_attempts=5, sleep=waits.append))
    with pytest.raises(AuthError) as err:
        client.read("Patient", "1")
    assert "the token endpoint refused the adapter's credentials" in str(err.value)
    assert err.value.status == status and err.value.outcome == "invalid_client: unknown key"
    assert len(responses.calls) == 1 and waits == []


@responses.activate
def test_a_token_endpoint_down_for_every_attempt_is_unavailable(rsa_key) -> None:  # type: ignore[no-untyped-def]
    responses.get(f"{BASE}/.well-known/smart-configuration", status=503)
    responses.get(f"{BASE}/.well-known/smart-configuration", json={"token_endpoint": TOKEN_URL})
    responses.post(TOKEN_URL, status=502)
    waits: list[float] = []
    client = FhirClient(BASE, auth=SmartBackendAuth(None, CLIENT_ID, pem(rsa_key)),
                        retry=RetryPolicy(max_attempts=3, sleep=waits.append))
    with pytest.raises(FhirError) as err:
        client.read("Patient", "1")
    assert not isinstance(err.value, AuthError) and err.value.status == 502
    assert "the token endpoint is unavailable (3 attempts)" in str(err.value)
    assert err.value.request == f"POST {TOKEN_URL}"
    assert [c.request.method for c in responses.calls] == ["GET", "GET", "POST", "POST", "POST"]
    assert len(waits) == 3  # one for the discovery, two for the token


@responses.activate
def test_private_key_as_jwk_and_discovered_token_url(ec_key) -> None:  # type: ignore[no-untyped-def]
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(ec_key))
    jwk["kid"] = "jwk-kid"
    clock = Clock()
    endpoint = TokenEndpoint(ec_key.public_key(), "ES384", clock)
    responses.get(f"{BASE}/.well-known/smart-configuration", json={"token_endpoint": TOKEN_URL})
    responses.add_callback(responses.POST, TOKEN_URL, callback=endpoint)
    responses.add_callback(responses.GET, f"{BASE}/Patient/1", callback=fhir_echo(lambda: set(endpoint.issued)))
    client = FhirClient(BASE, auth=SmartBackendAuth(None, CLIENT_ID, jwk, alg="ES384", clock=clock))
    assert client.read("Patient", "1") == PATIENT
    assert endpoint.headers[0]["kid"] == "jwk-kid"


def test_unsupported_alg() -> None:
    with pytest.raises(ValueError):
        SmartBackendAuth(TOKEN_URL, CLIENT_ID, "x", alg="HS256")


@responses.activate
def test_bearer_token() -> None:
    responses.get(f"{BASE}/Patient/1", json=PATIENT)
    FhirClient(BASE, auth=BearerToken("abc")).read("Patient", "1")
    assert responses.calls[0].request.headers["Authorization"] == "Bearer abc"
