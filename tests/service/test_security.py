"""API keys and scopes through the real app: refused requests get 401/403 with a challenge, every access to a
protected path is audited with the key's name (never the key) and the patient."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from fhir_adapter.service.app import create_app
from fhir_adapter.service.security import KeyRing, presented_key
from fhir_adapter.service.settings import ApiKey
from tests.service.conftest import API_KEYS


def _audit(app) -> list:
    assert app.state.audit.flush()
    return app.state.store.audit_entries(100)


def test_no_key_configured_starts_and_refuses_everything(make_settings: Callable) -> None:
    app = create_app(make_settings(api_keys=[]))
    with TestClient(app) as client:
        assert client.get("/health/live").status_code == 200
        for method, path in (("GET", "/v1/feed"), ("POST", "/v1/evaluate"), ("GET", "/metrics")):
            r = client.request(method, path, headers={"Authorization": f"Bearer {API_KEYS['admin'][0]}"})
            assert r.status_code == 401 and r.json()["resourceType"] == "OperationOutcome"
            assert r.headers["www-authenticate"].startswith('Bearer realm="fhir-adapter"')
            assert "no API key is configured" in r.json()["issue"][0]["diagnostics"]
    assert [(a.actor, a.action, a.status_code) for a in reversed(_audit(app))] == [
        ("unknown-key", "GET /v1/feed", 401), ("unknown-key", "POST /v1/evaluate", 401),
        ("unknown-key", "GET /metrics", 401)]


def test_refused_and_allowed_requests_are_audited(make_settings: Callable, auth: Callable) -> None:
    app = create_app(make_settings())
    with TestClient(app) as client:
        r = client.get("/v1/feed")
        assert r.status_code == 401 and r.headers["www-authenticate"] == 'Bearer realm="fhir-adapter"'
        r = client.get("/v1/feed", headers={"Authorization": "Bearer wrong-key-wrong-key"})
        assert r.status_code == 401 and 'error="invalid_token"' in r.headers["www-authenticate"]
        r = client.get("/v1/feed", headers=auth("jobs"))
        assert r.status_code == 403
        assert r.headers["www-authenticate"].endswith('error="insufficient_scope", scope="results:read"')
        assert r.json()["issue"][0]["code"] == "forbidden"
        assert client.get("/v1/feed", headers={"X-API-Key": API_KEYS["reader"][0]}).status_code == 200
        assert client.get("/v1/feed", headers={"Authorization": f"bearer {API_KEYS['reader'][0]}"}).status_code == 200
        # no FHIR server configured: 503, but authorized and audited with the patient
        r = client.post("/v1/evaluate", json={"study": "NCT07377058", "patient": "p-audit"}, headers=auth("reader"))
        assert r.status_code == 503
        client.get("/health/ready")  # health is not audited
    entries = [(a.actor, a.action, a.patient, a.status_code) for a in reversed(_audit(app))]
    assert entries == [
        ("anonymous", "GET /v1/feed", None, 401),
        ("unknown-key", "GET /v1/feed", None, 401),
        ("jobs", "GET /v1/feed", None, 403),
        ("reader", "GET /v1/feed", None, 200),
        ("reader", "GET /v1/feed", None, 200),
        ("reader", "POST /v1/evaluate", "p-audit", 503),
    ]
    assert all(a.at.tzinfo is not None for a in _audit(app))
    assert _audit(app)[-4].detail == "no entries"


def test_an_unauthenticated_bad_body_is_401_not_a_validation_answer(make_settings: Callable) -> None:
    with TestClient(create_app(make_settings())) as client:
        for content in (b"{not json", b'{"study": 1}'):
            r = client.post("/v1/evaluate", content=content, headers={"Content-Type": "application/json"})
            assert r.status_code == 401 and "study" not in r.text and "body" not in r.json()["issue"][0].get(
                "expression", [])


def test_unknown_paths_are_audited_without_the_raw_path(make_settings: Callable) -> None:
    app = create_app(make_settings())
    with TestClient(app) as client:
        assert client.get("/v1/Patient/secret-id").status_code == 404
    [entry] = _audit(app)
    assert (entry.actor, entry.action, entry.status_code) == ("anonymous", "GET (no route)", 404)


def test_keys_never_reach_the_state_database(make_settings: Callable, auth: Callable, tmp_path: Path) -> None:
    app = create_app(make_settings())
    with TestClient(app) as client:
        client.get("/v1/feed", headers=auth())
        client.get("/v1/feed", headers={"X-API-Key": "a-guess-at-a-key-000"})
    app.state.store.close()
    data = b"".join(p.read_bytes() for p in tmp_path.glob("service.db*"))
    assert b"admin" in data  # the name is there ...
    assert API_KEYS["admin"][0].encode() not in data and b"a-guess-at-a-key" not in data  # ... the keys are not


def test_a_key_configured_by_its_sha256(make_settings: Callable) -> None:
    key = "hospital-engine-key-from-vault"
    settings = make_settings(api_keys=[{"name": "mirth", "key_sha256": hashlib.sha256(key.encode()).hexdigest(),
                                        "scopes": ["results:read"]}])
    with TestClient(create_app(settings)) as client:
        assert client.get("/v1/feed", headers={"Authorization": f"Bearer {key}"}).status_code == 200
        assert client.get("/v1/feed", headers={"Authorization": f"Bearer {key}x"}).status_code == 401
        assert client.get("/metrics", headers={"Authorization": f"Bearer {key}"}).status_code == 403


def test_keyring_identifies_only_exact_keys() -> None:
    ring = KeyRing([ApiKey(name="a", key="0123456789abcdef-a", scopes=["results:read"]),
                    ApiKey(name="b", key_sha256=hashlib.sha256(b"0123456789abcdef-b").hexdigest(),
                           scopes=["jobs:run", "writeback"])])
    assert ring.identify("0123456789abcdef-a").name == "a"
    assert ring.identify("0123456789abcdef-b").scopes == frozenset({"jobs:run", "writeback"})
    for wrong in ("", "0123456789abcdef-", "0123456789abcdef-a ", "0123456789ABCDEF-A", "\udcff"):
        assert ring.identify(wrong) is None
    assert len(KeyRing([])) == 0


@pytest.mark.parametrize(("headers", "key"), [
    ({"authorization": "Bearer k1"}, "k1"),
    ({"authorization": "bearer  k1 "}, "k1"),
    ({"authorization": "Basic dXNlcjpwYXNz"}, None),
    ({"authorization": "Basic dXNlcjpwYXNz", "x-api-key": "k2"}, "k2"),
    ({"authorization": "Bearer ", "x-api-key": " "}, None),
    ({}, None),
])
def test_presented_key(headers: dict, key: str | None) -> None:
    assert presented_key(headers) == key


def test_listens_on_loopback_by_default(make_settings: Callable) -> None:
    assert make_settings().host == "127.0.0.1"
