"""Fixtures shared by the service tests: a Store on a temporary SQLite file, settings with test API keys, and an
app (FastAPI TestClient) against the real FHIR server with the built-in sample loaded.

    def test_x(service_client, auth):
        r = service_client.get("/v1/feed", headers=auth())             # every scope
        r = service_client.get("/v1/feed", headers=auth("reader"))     # results:read only
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fhir_adapter.service.settings import ServiceSettings
from fhir_adapter.service.store import Store

# name -> (key, scopes); the keys are test values, never used outside the tests
API_KEYS = {
    "admin": ("test-admin-key-0123456789", ["results:read", "jobs:run", "writeback", "metrics:read"]),
    "reader": ("test-reader-key-0123456789", ["results:read"]),
    "jobs": ("test-jobs-key-0123456789", ["jobs:run"]),
    "prometheus": ("test-prometheus-key-012345", ["metrics:read"]),
}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A fresh Store on a temporary SQLite file, tables created."""
    s = Store(f"sqlite:///{tmp_path / 'state.db'}")
    s.create_all()
    yield s
    s.close()


@pytest.fixture(scope="session")
def sample_site() -> Path:
    """The sample's site mappings (its local codes)."""
    from fhir_adapter.paths import sample_dir

    return sample_dir().parent / "site-mappings.json"


@pytest.fixture(scope="session")
def sample_loaded(fhir_base: str) -> str:
    """The built-in sample population on the real FHIR server (loaded once per session); the base URL."""
    from fhir_adapter.client import FhirClient
    from fhir_adapter.sample.load import load_sample

    with FhirClient(fhir_base) as client:
        load_sample(client, batch_size=1000)
    return fhir_base


@pytest.fixture
def make_settings(tmp_path: Path, sample_site: Path) -> Callable[..., ServiceSettings]:
    """``make_settings(**overrides)``: settings with the test API keys, a state file in ``tmp_path``, no FHIR
    server and the change poller off (``poll_interval_seconds=0``) unless overridden."""

    def make(**overrides: object) -> ServiceSettings:
        values: dict[str, object] = {
            "database_url": f"sqlite:///{tmp_path / 'service.db'}",
            "api_keys": [{"name": name, "key": key, "scopes": scopes} for name, (key, scopes) in API_KEYS.items()],
            "poll_interval_seconds": 0,
            "site": sample_site,
            "fhir_max_attempts": 2,
        }
        values.update(overrides)
        return ServiceSettings(**values)

    return make


@pytest.fixture
def service_settings(make_settings: Callable[..., ServiceSettings], sample_loaded: str) -> ServiceSettings:
    """Settings for the real FHIR server with the sample loaded."""
    return make_settings(fhir_base=sample_loaded)


@pytest.fixture
def auth() -> Callable[[str], dict[str, str]]:
    """``auth(name="admin")``: the headers that present test key ``name`` (``Authorization: Bearer``)."""

    def headers(name: str = "admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {API_KEYS[name][0]}"}

    return headers


@pytest.fixture
def service_app(service_settings: ServiceSettings):  # -> FastAPI
    from fhir_adapter.service.app import create_app

    return create_app(service_settings)


@pytest.fixture
def service_client(service_app):  # -> TestClient (lifespan run)
    from fastapi.testclient import TestClient

    with TestClient(service_app) as client:
        yield client
