"""Schemathesis against the app's OpenAPI schema: whatever the schema allows (and much that it does not), the
service never answers 5xx. Runs through ASGI against the real FHIR server, with a valid API key."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from fhir_adapter.service.settings import ServiceSettings
from tests.service.conftest import API_KEYS

pytestmark = pytest.mark.server

MAX_EXAMPLES = 25  # per operation: the whole run stays well under a minute


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory: pytest.TempPathFactory, sample_loaded: str, sample_site: Path) -> Iterator[object]:
    from fhir_adapter.service.app import create_app

    folder = tmp_path_factory.mktemp("fuzz")
    svc = ServiceSettings(fhir_base=sample_loaded, database_url=f"sqlite:///{folder / 'fuzz.db'}", site=sample_site,
                          poll_interval_seconds=0, fhir_max_attempts=1, as_of="2025-06-01",
                          api_keys=[{"name": "fuzz", "key": API_KEYS["admin"][0], "scopes": API_KEYS["admin"][1]}])
    app = create_app(svc)
    try:  # jobs are accepted and queued but never run: the fuzzer must not start population screens
        from fhir_adapter.service.jobs import JobRunner

        app.state.jobs = JobRunner(app.state.store, svc)
    except ImportError:
        pass
    yield app
    app.state.store.close()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_server_errors(fuzz_app: object, mode: GenerationMode) -> None:
    """Every operation, with data that fits the schema (positive) and data that does not (negative)."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzz_app)
    headers = {"Authorization": f"Bearer {API_KEYS['admin'][0]}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {"/v1/evaluate", "/v1/feed", "/health/ready"} <= {op.path for op in operations}
    fuzzed = []
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def call(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=headers, checks=[not_a_server_error])

        try:
            call()
        except Unsatisfiable:  # negative mode: an operation with no input cannot get a wrong one
            assert mode is GenerationMode.NEGATIVE
            continue
        fuzzed.append(operation.path)
    assert {"/v1/evaluate", "/v1/feed"} <= set(fuzzed)
