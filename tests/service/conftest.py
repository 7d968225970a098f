"""Fixtures shared by the service tests: a Store on a temporary SQLite file, settings with test API keys, and an
app (FastAPI TestClient) against the real FHIR server with the built-in sample loaded.

    def test_x(service_client, auth):
        r = service_client.get("/v1/feed", headers=auth())             # every scope
        r = service_client.get("/v1/feed", headers=auth("reader"))     # results:read only
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from fhir_adapter.service.settings import ServiceSettings
from fhir_adapter.service.store import Store

if TYPE_CHECKING:
    from fhir_adapter.client import FhirClient

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
    """The built-in sample population on the real FHIR server, as it is in the package now; the base URL.

    Loaded (7-40 s) only when some sample resource is missing or differs on the server (a changed sample, a
    test that changed or deleted one); checking costs about a second (every sample resource read back by id).
    """
    from fhir_adapter.client import FhirClient
    from fhir_adapter.sample.load import load_sample

    with FhirClient(fhir_base) as client:
        if not sample_is_current(client):
            load_sample(client, batch_size=1000)
    return fhir_base


def sample_is_current(client: FhirClient, directory: Path | None = None, chunk: int = 200) -> bool:
    """Whether every resource of the sample (``directory``: the built-in one) is on the server with the same
    content (``meta`` compared without what the server sets: versionId, lastUpdated)."""
    from fhir_adapter.sample.load import read_resources, sample_files

    for path in sample_files(directory):
        wanted = {r["id"]: _content(r) for r in read_resources(path)}
        ids = sorted(wanted)
        for start in range(0, len(ids), chunk):
            part = ids[start:start + chunk]
            found = {r.get("id"): _content(r) for page in client.search_pages(path.stem, {"_id": ",".join(part)},
                                                                              count=len(part))
                     for r in page.resources()}
            if any(found.get(rid) != wanted[rid] for rid in part):
                return False
    return True


def _content(resource: dict[str, Any]) -> dict[str, Any]:
    meta = {k: v for k, v in (resource.get("meta") or {}).items() if k not in ("versionId", "lastUpdated")}
    return {**{k: v for k, v in resource.items() if k != "meta"}, **({"meta": meta} if meta else {})}


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
