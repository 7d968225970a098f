"""The service's contract: its OpenAPI document states what it sends, checked by schemathesis (every check, every
phase, with a key and without one) against the app on a real port, and by a client generated from the document
(openapi-python-client) that calls evaluate and the feed. Also: OPTIONS names the methods that work, and the
per-key limit on queued and running jobs."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fhir_adapter.service.app import create_app
from fhir_adapter.service.settings import ServiceSettings
from tests.service.conftest import API_KEYS
from tests.service.live import serving

BIN = Path(sys.executable).parent
ST_CONFIG = Path(__file__).with_name("schemathesis.toml")
MAX_EXAMPLES = 25  # per operation and phase: both runs together take about a minute on 2 busy cores
PATIENT = "mda5-ild-01"  # a sample patient


@pytest.fixture(scope="module")
def live_url(tmp_path_factory: pytest.TempPathFactory, sample_loaded: str, sample_site: Path) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("contract")
    settings = ServiceSettings(
        fhir_base=sample_loaded, database_url=f"sqlite:///{folder / 'state.db'}", site=sample_site,
        poll_interval_seconds=0, fhir_max_attempts=1, as_of="2025-06-01",
        api_keys=[{"name": name, "key": key, "scopes": scopes} for name, (key, scopes) in API_KEYS.items()])
    app = create_app(settings)
    with serving(app) as url:
        yield url
    app.state.store.close()


def _schemathesis(url: str, cwd: Path, *headers: str) -> subprocess.CompletedProcess[str]:
    args = [str(BIN / "st"), "--config-file", str(ST_CONFIG), "--no-color", "run", f"{url}/openapi.json",
            "--checks", "all", "--phases", "examples,coverage,fuzzing,stateful", "--max-examples", str(MAX_EXAMPLES),
            "--generation-deterministic", "--workers", "1", "--suppress-health-check", "all",
            "--request-timeout", "60"]
    for h in headers:
        args += ["-H", h]
    return subprocess.run(args, capture_output=True, text=True, timeout=900, cwd=cwd,
                          env={**os.environ, "NO_COLOR": "1"})


@pytest.mark.server
@pytest.mark.parametrize("key", ["admin", None], ids=["with-key", "without-key"])
def test_schemathesis_finds_no_failure(live_url: str, key: str | None, tmp_path: Path) -> None:
    """All checks (status codes, content types, headers and bodies as documented, negative data rejected,
    positive data accepted, Allow, auth...) in all phases, derandomized (the same cases every run)."""
    headers = [f"Authorization: Bearer {API_KEYS[key][0]}"] if key else []
    run = _schemathesis(live_url, tmp_path, *headers)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-6000:]
    assert "FAILURES" not in out and " passed" in out, out[-3000:]
    for phase in ("Examples", "Coverage", "Fuzzing", "Stateful"):
        assert f"✅ {phase}" in out, out[-3000:]


@pytest.mark.server
def test_a_generated_client_calls_evaluate_and_the_feed(live_url: str, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import httpx

    doc = tmp_path / "openapi.json"
    doc.write_bytes(httpx.get(f"{live_url}/openapi.json").content)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}  # it formats with ruff
    gen = subprocess.run([str(BIN / "openapi-python-client"), "generate", "--path", str(doc), "--meta", "none",
                          "--output-path", str(tmp_path / "fhir_adapter_client")],
                         capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert gen.returncode == 0, gen.stdout + gen.stderr
    monkeypatch.syspath_prepend(str(tmp_path))
    client_mod = importlib.import_module("fhir_adapter_client")
    evaluate = importlib.import_module("fhir_adapter_client.api.evaluate.evaluate_v1_evaluate_post")
    feed = importlib.import_module("fhir_adapter_client.api.feed.feed_v1_feed_get")
    models = importlib.import_module("fhir_adapter_client.models")

    client = client_mod.AuthenticatedClient(base_url=live_url, token=API_KEYS["reader"][0], timeout=60)
    body = models.EvaluateRequest(study=models.EvaluateRequestStudy("NCT07377058"), patient=PATIENT)
    got = evaluate.sync_detailed(client=client, body=body)
    assert got.status_code == 200, got.content
    ev = got.parsed
    assert isinstance(ev, models.EvaluateResponse)  # a model, not a string
    assert isinstance(ev.result, models.ScreeningResult) and ev.result.patient == f"Patient/{PATIENT}"
    assert ev.result.status in ("candidate", "potential-candidate", "ineligible")
    assert all(isinstance(c, models.CriterionResult) for c in ev.result.criteria.additional_properties.values())

    page = feed.sync(client=client, study=models.FeedV1FeedGetStudyType0("NCT07377058"))
    assert isinstance(page, models.FeedPage)
    assert ev.seq in [e.seq for e in page.entries]
    mine = next(e for e in page.entries if e.seq == ev.seq)
    assert isinstance(mine.result, models.ScreeningResult) and mine.result.status == ev.result.status

    refused = evaluate.sync_detailed(client=client_mod.Client(base_url=live_url), body=body)
    assert refused.status_code == 401 and isinstance(refused.parsed, models.OperationOutcome)


# -- the document itself, and what the app answers beside it --------------------------------------------------

@pytest.fixture
def app_client(make_settings: Callable[..., ServiceSettings]) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings())) as client:
        yield client


def _content(op: dict[str, Any], status: str) -> dict[str, Any]:
    return op["responses"][status].get("content", {})


def test_the_document_states_bodies_and_errors_as_sent(app_client: TestClient) -> None:
    doc = app_client.get("/openapi.json").json()
    schemas = doc["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and "OperationOutcome" in schemas
    ops = {(m.upper(), p): op for p, item in doc["paths"].items() for m, op in item.items()}
    ref = {"$ref": "#/components/schemas/OperationOutcome"}
    for (method, path), op in ops.items():
        for status, response in op["responses"].items():
            if status[0] in "45":
                assert response["content"] == {"application/fhir+json": {"schema": ref}}, (method, path, status)
        if path.startswith("/v1/"):
            assert {"401", "403", "422"} <= set(op["responses"]), (method, path)
    ok = {key: _content(op, "202" if key[0] == "POST" and "jobs" in key[1] else "200")
          for key, op in ops.items() if key[1] != "/metrics"}
    for key, content in ok.items():  # every success body a real schema, never {"type": "string"}
        assert content["application/json"]["schema"].get("$ref"), key
    assert ok["GET", "/v1/feed"]["application/json"]["schema"]["$ref"].endswith("/FeedPage")
    assert {"400", "404", "502", "503"} <= set(ops["POST", "/v1/evaluate"]["responses"])
    assert "429" in ops["POST", "/v1/jobs"]["responses"]
    assert "409" in ops["POST", "/v1/jobs/{job_id}/cancel"]["responses"]
    assert set(schemas["EvaluateRequest"]["properties"]["study"]["enum"]) == {
        "NCT07377058", "promis-mda5", "PROMIS-MDA5", "NCT04966884", "tofacitinib", "tofacitinib-mda5"}
    assert schemas["ScreeningResult"]["additionalProperties"] is True  # results may gain fields
    assert schemas["ScreeningResult"]["properties"]["status"]["enum"] == ["candidate", "potential-candidate",
                                                                          "ineligible"]
    assert schemas["JobOut"]["properties"]["status"]["enum"] == ["queued", "running", "succeeded", "failed",
                                                                 "cancelled", "interrupted"]


def test_a_422_is_the_operation_outcome_the_document_names(app_client: TestClient,
                                                         auth: Callable[..., dict[str, str]]) -> None:
    r = app_client.post("/v1/evaluate", json={"study": "no-such-study", "patient": "p1"}, headers=auth())
    assert r.status_code == 422 and r.headers["content-type"] == "application/fhir+json"
    assert r.json()["resourceType"] == "OperationOutcome" and r.json()["issue"][0]["expression"] == ["study"]


@pytest.mark.parametrize(("path", "allow"), [("/v1/jobs", "GET, POST, OPTIONS"), ("/v1/feed", "GET, OPTIONS"),
                                             ("/v1/jobs/abc/cancel", "POST, OPTIONS")])
def test_options_and_405_name_every_method_that_works(app_client: TestClient, path: str, allow: str) -> None:
    r = app_client.options(path)
    assert r.status_code == 204 and r.headers["allow"] == allow
    wrong = app_client.put(path)
    assert wrong.status_code == 405 and wrong.headers["allow"] == allow
    assert wrong.headers["content-type"] == "application/fhir+json"


def test_one_key_may_queue_only_so_many_jobs(make_settings: Callable[..., ServiceSettings],
                                            auth: Callable[..., dict[str, str]]) -> None:
    """``max_jobs_per_key`` queued or running jobs per key; one more is a 429 with Retry-After. Another key is not
    held up, a cancelled job frees its place, and a resumed job counts again. The runner is not started: the jobs
    stay queued."""
    from fhir_adapter.service.jobs import JobRunner

    settings = make_settings(max_jobs_per_key=2, retry_after_seconds=11)
    app = create_app(settings)
    app.state.jobs = JobRunner(app.state.store, settings)
    body = {"source": "sample", "study": "NCT07377058", "as_of": "2025-06-01"}
    with TestClient(app) as client:
        first, second = (client.post("/v1/jobs", json=body, headers=auth("jobs")) for _ in range(2))
        assert (first.status_code, second.status_code) == (202, 202)
        third = client.post("/v1/jobs", json=body, headers=auth("jobs"))
        assert third.status_code == 429 and third.headers["retry-after"] == "11"
        assert third.json()["issue"][0]["code"] == "throttled"
        assert client.post("/v1/jobs", json=body, headers=auth("admin")).status_code == 202  # another key
        cancelled = client.post(f"{first.headers['location']}/cancel", headers=auth("jobs"))
        assert cancelled.json()["status"] == "cancelled"
        assert client.post("/v1/jobs", json=body, headers=auth("jobs")).status_code == 202
        resumed = client.post(f"{first.headers['location']}/resume", headers=auth("jobs"))
        assert resumed.status_code == 429 and resumed.headers["retry-after"] == "11"
    assert [j.status for j in app.state.store.list_jobs()].count("queued") == 3
