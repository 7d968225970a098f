"""The service through its real app (FastAPI TestClient) against the real FHIR server with the sample loaded."""

from __future__ import annotations

import io
import logging
import socket
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from fhir_adapter.service.api import decode_cursor, encode_cursor
from fhir_adapter.service.app import create_app
from fhir_adapter.service.logs import RedactPatients, redact
from fhir_adapter.service.settings import ServiceSettings

pytestmark = pytest.mark.server

AS_OF = "2025-06-01"
PATIENTS = ["incl-i5-cni-dose-change", "excl-e15-prior-tcz", "excl-e4-iv-antibiotic", "incl-i2-no-mda5-test",
            "excl-e3e-plt"]


def _evaluate(client: TestClient, headers: dict[str, str], patient: str, study: str = "NCT07377058",
              **extra: object) -> dict:
    r = client.post("/v1/evaluate", json={"study": study, "patient": patient, "as_of": AS_OF, **extra},
                    headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def _record(fhir_base: str, patient: str):
    from fhir_adapter.sources.server import ServerSource

    with ServerSource(fhir_base) as source:
        [record] = source.records([patient])
    return record


def _outcome(r, status: int, expression: str | None = None) -> dict:
    """The response is an OperationOutcome with ``status`` naming ``expression``, and no stack trace."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/fhir+json")
    body = r.json()
    assert body["resourceType"] == "OperationOutcome" and body["issue"]
    assert "Traceback" not in r.text and 'File "' not in r.text
    if expression is not None:
        assert any(expression in i.get("expression", ()) for i in body["issue"]), body
    return body


def test_evaluate_gives_the_same_json_as_the_cli(service_client: TestClient, auth: Callable, sample_loaded: str,
                                                 sample_site: Path) -> None:
    from fhir_adapter.response.respond import Responder
    from fhir_adapter.response.settings import load_settings
    from fhir_adapter.response.tis import load_rules
    from fhir_adapter.studies.definition import load_study
    from fhir_adapter.studies.screen import screen
    from fhir_adapter.terminology.catalog import Catalog

    catalog = Catalog.load(sample_site)
    got = _evaluate(service_client, auth(), "mda5-ild-02-local", study="promis-mda5")
    expected = screen(_record(sample_loaded, "mda5-ild-02-local"), load_study("NCT07377058"), catalog,
                      date.fromisoformat(AS_OF), date.fromisoformat(AS_OF))
    assert got["result"] == expected
    assert (got["study"], got["kind"], got["patient"], got["changed"]) == (
        "NCT07377058", "screening", "mda5-ild-02-local", True)

    got = _evaluate(service_client, auth(), "Patient/tofa-worsening", study="NCT04966884", kind="response")
    rs = load_settings()
    expected = Responder(rs.study("NCT04966884"), rs, load_rules(), catalog)(_record(sample_loaded, "tofa-worsening"))
    assert got["result"] == expected and got["patient"] == "tofa-worsening"
    screening, response = service_client.get("/v1/feed", headers=auth()).json()["entries"]
    assert (screening["seq"], screening["kind"], screening["origin"]) == (1, "screening", "evaluate")
    assert screening["status"] == screening["result"]["status"] and screening["result"]["as_of"] == AS_OF
    assert (response["seq"], response["kind"], response["status"]) == (2, "response", expected["category"])


def test_evaluate_a_patient_out_of_the_entry_cohort(service_client: TestClient, auth: Callable) -> None:
    """Dermatomyositis with anti-MDA5 negative: out of the entry cohort by I2. By default the short result (I2
    only, "cohort": "out"), which the feed carries; ``all_criteria`` evaluates every criterion, same status."""
    short = _evaluate(service_client, auth(), "decoy-dm-mda5neg-noild")
    assert short["result"]["status"] == "ineligible" and short["result"]["cohort"] == "out"
    assert list(short["result"]["criteria"]) == ["I2"] and short["result"]["criteria"]["I2"]["result"] == "not-met"
    [entry] = service_client.get("/v1/feed", headers=auth()).json()["entries"]
    assert entry["result"] == short["result"] and entry["status"] == "ineligible"
    full = _evaluate(service_client, auth(), "decoy-dm-mda5neg-noild", all_criteria=True)
    assert full["changed"] and full["result"]["status"] == "ineligible" and full["result"]["cohort"] == "out"
    assert {"I1", "I2", "E18", "E14.3"} <= set(full["result"]["criteria"])
    assert full["result"]["criteria"]["I2"] == short["result"]["criteria"]["I2"]
    again = _evaluate(service_client, auth(), "decoy-dm-mda5neg-noild")  # back to the short result: a change
    assert again["changed"] and again["result"] == short["result"]


def test_reevaluating_an_unchanged_patient_adds_no_entry(service_client: TestClient, auth: Callable) -> None:
    first = _evaluate(service_client, auth(), PATIENTS[0])
    again = _evaluate(service_client, auth(), PATIENTS[0])
    later = _evaluate(service_client, auth(), PATIENTS[0], as_of="2025-06-02")  # a new day, the same assessment
    assert first["changed"] and not again["changed"]
    assert again["seq"] == first["seq"] and again["result"] == first["result"]
    # the screening date alone is no change: a new entry only when the assessment itself differs
    differs = {k: v for k, v in later["result"].items() if k != "as_of"} != \
        {k: v for k, v in first["result"].items() if k != "as_of"}
    assert later["changed"] == differs and (later["seq"] == first["seq"]) != differs
    assert len(service_client.get("/v1/feed", headers=auth()).json()["entries"]) == (2 if later["changed"] else 1)


def test_feed_pages_each_entry_exactly_once_and_survives_a_restart(service_settings: ServiceSettings,
                                                                    auth: Callable) -> None:
    with TestClient(create_app(service_settings)) as client:
        for pid in PATIENTS:
            _evaluate(client, auth("reader"), pid)
        seen, cursor, pages = [], None, 0
        while True:
            r = client.get("/v1/feed", params={"limit": 2, **({"since": cursor} if cursor else {})},
                           headers=auth("reader"))
            assert r.status_code == 200
            page = r.json()
            assert r.headers["link"].startswith("<http://testserver/v1/feed?") and f"since={page['next']}" in \
                r.headers["link"] and r.headers["link"].endswith('>; rel="next"')
            if not page["entries"]:
                assert page["next"] == cursor  # an empty page keeps the engine's place
                break
            seen += [e["patient"] for e in page["entries"]]
            cursor, pages = page["next"], pages + 1
        assert seen == PATIENTS and pages == 3
    # a restart: a new app on the same state file; the engine's cursor still holds, nothing repeats
    with TestClient(create_app(service_settings)) as client:
        assert client.get("/v1/feed", params={"since": cursor}, headers=auth()).json()["entries"] == []
        again = _evaluate(client, auth(), PATIENTS[1])
        assert not again["changed"]
        everything = client.get("/v1/feed", headers=auth()).json()["entries"]
        assert [e["seq"] for e in everything] == [1, 2, 3, 4, 5]
        statuses = {e["status"] for e in everything}
        some = next(iter(statuses))
        filtered = client.get("/v1/feed", params={"status": some, "study": "NCT07377058", "kind": "screening"},
                              headers=auth()).json()
        assert [e["seq"] for e in filtered["entries"]] == [e["seq"] for e in everything if e["status"] == some]
        assert decode_cursor(filtered["next"]) == 5  # past the entries that did not match, too
        assert client.get("/v1/feed", params={"kind": "response"}, headers=auth()).json()["entries"] == []


def test_idle_poll_gets_304_from_the_etag(service_client: TestClient, auth: Callable) -> None:
    _evaluate(service_client, auth(), PATIENTS[0])
    first = service_client.get("/v1/feed", headers=auth())
    etag = first.headers["etag"]
    cursor = first.json()["next"]
    idle = service_client.get("/v1/feed", headers={**auth(), "If-None-Match": etag})
    assert idle.status_code == 304 and idle.content == b"" and idle.headers["etag"] == etag
    polled = service_client.get("/v1/feed", params={"since": cursor}, headers=auth())
    assert polled.headers["etag"] != etag  # another question, another tag
    assert service_client.get("/v1/feed", params={"since": cursor},
                              headers={**auth(), "If-None-Match": polled.headers["etag"]}).status_code == 304
    _evaluate(service_client, auth(), PATIENTS[1])  # a change: the same poll is no longer idle
    changed = service_client.get("/v1/feed", params={"since": cursor},
                                 headers={**auth(), "If-None-Match": polled.headers["etag"]})
    assert changed.status_code == 200 and [e["patient"] for e in changed.json()["entries"]] == [PATIENTS[1]]


def test_cursor_round_trip_and_malformed_cursors() -> None:
    assert decode_cursor(encode_cursor(0)) == 0 and decode_cursor(encode_cursor(123456)) == 123456
    for bad in ("xx", "djE6LTE", "=", "djE6MQ==", "djI6MQ", "a" * 65, "djE6YWJj"):
        with pytest.raises(Exception, match="not a cursor"):
            decode_cursor(bad)


@pytest.mark.parametrize(("request_args", "status", "field"), [
    ({"json": {"study": "NCT07377058"}}, 422, "patient"),
    ({"json": {"study": "NCT07377058", "patient": "no spaces allowed"}}, 422, "patient"),
    ({"json": {"study": "NCT07377058", "patient": "p1", "as_of": "June"}}, 422, "as_of"),
    ({"json": {"study": "NCT07377058", "patient": "p1", "kind": "other"}}, 422, "kind"),
    ({"json": {"study": "NCT07377058", "patient": "p1", "extra": 1}}, 422, "extra"),
    ({"json": {"study": "no-such-study", "patient": PATIENTS[0]}}, 422, "study"),
    ({"json": {"study": "/etc/passwd.json", "patient": PATIENTS[0]}}, 422, "study"),
    ({"json": {"study": "NCT07377058", "patient": PATIENTS[0], "as_of": "2025-06-01",
               "randomization": "2025-05-01"}}, 422, "randomization"),
    ({"content": b"{not json", "headers": {"Content-Type": "application/json"}}, 400, "body"),
    ({"json": {"study": "NCT07377058", "patient": "not-on-the-server-at-all"}}, 404, "patient"),
])
def test_bad_evaluate_requests_name_the_field(service_client: TestClient, auth: Callable, request_args: dict,
                                              status: int, field: str) -> None:
    headers = {**auth(), **request_args.pop("headers", {})}
    _outcome(service_client.post("/v1/evaluate", headers=headers, **request_args), status, field)


@pytest.mark.parametrize(("params", "status", "field"), [
    ({"since": "not-a-cursor"}, 400, "since"),
    ({"limit": 0}, 422, "limit"),
    ({"limit": 1001}, 422, "limit"),
    ({"limit": "many"}, 422, "limit"),
    ({"kind": "other"}, 422, "kind"),
])
def test_bad_feed_requests_name_the_field(service_client: TestClient, auth: Callable, params: dict, status: int,
                                          field: str) -> None:
    _outcome(service_client.get("/v1/feed", params=params, headers=auth()), status, field)


def test_unknown_route_is_an_operation_outcome(service_client: TestClient, auth: Callable) -> None:
    _outcome(service_client.get("/v1/nothing-here", headers=auth()), 404)
    _outcome(service_client.delete("/v1/feed", headers=auth()), 405)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_fhir_server_is_503_with_retry_after(make_settings: Callable, auth: Callable,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    settings = make_settings(fhir_base=f"http://127.0.0.1:{_closed_port()}/fhir", retry_after_seconds=17)
    with TestClient(create_app(settings)) as client:
        r = client.post("/v1/evaluate", json={"study": "NCT07377058", "patient": "some-patient"}, headers=auth())
        body = _outcome(r, 503)
        assert r.headers["retry-after"] == "17" and "some-patient" not in r.text
        assert body["issue"][0]["code"] == "transient"
        ready = client.get("/health/ready")
        _outcome(ready, 503, "fhir")
        assert client.get("/health/live").json() == {"status": "live"}
        metrics = client.get("/metrics", headers=auth("prometheus")).text
    assert 'fhir_adapter_evaluations_total{kind="screening",origin="evaluate",status="fhir-unavailable",' \
           'study="NCT07377058"} 1.0' in metrics
    assert "fhir_adapter_fhir_retries_total 1.0" in metrics  # fhir_max_attempts=2: one retry
    assert 'fhir_adapter_errors_total{kind="fhir-unavailable"}' in metrics


def test_no_fhir_server_configured_is_503(make_settings: Callable, auth: Callable) -> None:
    with TestClient(create_app(make_settings())) as client:
        r = client.post("/v1/evaluate", json={"study": "NCT07377058", "patient": "p1"}, headers=auth())
        assert "fhir_base" in _outcome(r, 503)["issue"][0]["diagnostics"]


def test_metrics_count_requests_and_evaluations(service_client: TestClient, auth: Callable) -> None:
    _evaluate(service_client, auth(), PATIENTS[0])
    service_client.get("/v1/feed", headers=auth())
    service_client.get("/v1/feed", params={"since": "bad"}, headers=auth())
    r = service_client.get("/metrics", headers=auth("prometheus"))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'fhir_adapter_http_requests_total{method="POST",route="/v1/evaluate",status="200"} 1.0' in text
    assert 'fhir_adapter_http_requests_total{method="GET",route="/v1/feed",status="400"} 1.0' in text
    assert 'fhir_adapter_http_request_duration_seconds_count{method="GET",route="/v1/feed"} 2.0' in text
    assert 'fhir_adapter_errors_total{kind="invalid"} 1.0' in text
    assert 'fhir_adapter_feed_appends_total{kind="screening",origin="evaluate",study="NCT07377058"} 1.0' in text
    assert "fhir_adapter_evaluations_total{" in text and "_created" not in text
    assert PATIENTS[0] not in text
    assert service_client.get("/metrics", headers=auth("reader")).status_code == 403


def test_write_back_needs_the_scope_and_the_setting(make_settings: Callable, sample_loaded: str, auth: Callable,
                                                     tag: str) -> None:
    from fhir_adapter.client import FhirClient

    patient = f"svc-wb-{tag}"
    with FhirClient(sample_loaded) as fhir:
        fhir.request("PUT", f"{sample_loaded}/Patient/{patient}",
                     json={"resourceType": "Patient", "id": patient, "birthDate": "1980-01-01", "gender": "female"})
    body = {"study": "NCT07377058", "patient": patient, "as_of": AS_OF, "write_back": True}
    with TestClient(create_app(make_settings(fhir_base=sample_loaded))) as client:
        _outcome(client.post("/v1/evaluate", json=body, headers=auth("reader")), 403, "Authorization")
        _outcome(client.post("/v1/evaluate", json=body, headers=auth()), 403, "write_back")
    with TestClient(create_app(make_settings(fhir_base=sample_loaded, write_back=True))) as client:
        r = client.post("/v1/evaluate", json=body, headers=auth())
        assert r.status_code == 200, r.text
        outcome = r.json()["write_back"]
        assert not outcome.get("error") and outcome["written"], outcome
        again = client.post("/v1/evaluate", json=body, headers=auth()).json()
        assert again["write_back"]["written"] == [] and again["write_back"]["unchanged"]
    with FhirClient(sample_loaded) as fhir:
        found = list(fhir.search("ResearchSubject", {"individual": f"Patient/{patient}"}))
    assert len(found) == 1


def test_write_back_follows_only_patients_in_the_entry_cohort(make_settings: Callable, sample_loaded: str,
                                                             auth: Callable, tag: str) -> None:
    """Out of the entry cohort (dermatomyositis, anti-MDA5 negative): evaluate with write_back writes nothing, not
    followed; the feed still carries the short result."""
    from fhir_adapter.client import FhirClient

    patient = f"svc-out-{tag}"
    subject = {"reference": f"Patient/{patient}"}
    with FhirClient(sample_loaded) as fhir:
        fhir.update({"resourceType": "Patient", "id": patient, "birthDate": "1980-01-01", "gender": "female"})
        fhir.update({"resourceType": "Condition", "id": f"{patient}-dm", "subject": subject,
                     "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "M33.10"}]},
                     "onsetDateTime": "2025-01-02"})
        fhir.update({"resourceType": "Observation", "id": f"{patient}-mda5", "subject": subject, "status": "final",
                     "code": {"coding": [{"system": "http://loinc.org", "code": "107563-9"}]},
                     "effectiveDateTime": "2025-05-01",
                     "valueCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": "260385009"}]}})
    body = {"study": "NCT07377058", "patient": patient, "as_of": AS_OF, "write_back": True}
    with TestClient(create_app(make_settings(fhir_base=sample_loaded, write_back=True))) as client:
        r = client.post("/v1/evaluate", json=body, headers=auth())
        assert r.status_code == 200, r.text
        got = r.json()
        assert got["result"]["cohort"] == "out" and list(got["result"]["criteria"]) == ["I2"]
        assert got["write_back"] == {"patient": patient, "written": [], "unchanged": [], "not_followed": True}
        [entry] = [e for e in client.get("/v1/feed", headers=auth()).json()["entries"] if e["patient"] == patient]
        assert entry["result"] == got["result"]
    with FhirClient(sample_loaded) as fhir:
        assert list(fhir.search("ResearchSubject", {"individual": f"Patient/{patient}"})) == []
        assert list(fhir.search("Observation", {"subject": f"Patient/{patient}", "code": "screening-assessment"})) == []


def test_a_bug_is_a_500_outcome_and_one_log_line_without_its_message(make_settings: Callable, auth: Callable,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    app = create_app(make_settings())

    @app.get("/v1/broken")
    def broken() -> None:
        raise ValueError("Patient/secret-7 has no such thing")

    with caplog.at_level(logging.ERROR), TestClient(app) as client:  # the client raises what escapes the app
        _outcome(client.get("/v1/broken", headers=auth()), 500)
        metrics = client.get("/metrics", headers=auth()).text
    assert [r.getMessage() for r in caplog.records] == ["internal error in GET /v1/broken: ValueError"]
    assert not any(r.exc_info for r in caplog.records) and "secret-7" not in caplog.text
    assert 'fhir_adapter_http_requests_total{method="GET",route="/v1/broken",status="500"} 1.0' in metrics
    assert 'fhir_adapter_errors_total{kind="internal"} 1.0' in metrics


def test_the_log_names_no_patient() -> None:
    assert redact("GET http://h/fhir/Observation?subject=Patient/abc-1&_count=200 failed") == \
        "GET http://h/fhir/Observation?subject=***&_count=200 failed"
    assert redact("Patient/x.y: I4 could not be evaluated") == "Patient/***: I4 could not be evaluated"
    assert redact("GET /Condition?patient=p-9") == "GET /Condition?patient=***"
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactPatients())
    logger = logging.getLogger("fhir_adapter.test_service_log")
    logger.addHandler(handler)
    try:
        logger.warning("%s failed; retry %d", "GET http://h/fhir/Patient/secret-id", 1)
    finally:
        logger.removeHandler(handler)
    assert stream.getvalue() == "GET http://h/fhir/Patient/*** failed; retry 1\n"
    try:
        raise KeyError("Observation?subject=Patient/secret-id")
    except KeyError:
        logger.addHandler(handler)
        try:
            logger.exception("failed")
        finally:
            logger.removeHandler(handler)
    assert "KeyError: 'Observation?subject=***'" in stream.getvalue() and "secret-id" not in stream.getvalue()


def test_openapi_schema_is_versioned_and_documents_the_keys(service_client: TestClient) -> None:
    schema = service_client.get("/openapi.json").json()
    assert {"/v1/evaluate", "/v1/feed", "/health/live", "/health/ready", "/metrics"} <= set(schema["paths"])
    assert {"HTTPBearer", "APIKeyHeader"} <= set(schema["components"]["securitySchemes"])


def test_serve_runs_uvicorn_on_loopback(tmp_path: Path, sample_loaded: str) -> None:
    """``fhir-adapter serve`` as a real process: the options and a settings file reach every worker."""
    import os
    import subprocess
    import sys
    import time

    import httpx

    config = tmp_path / "service.toml"
    config.write_text('poll_interval_seconds = 0\n[[api_keys]]\nname = "engine"\nkey = "serve-test-key-0123456789"\n')
    port = _closed_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FHIR_ADAPTER_") or k == "FHIR_ADAPTER_CACHE"}
    proc = subprocess.Popen([sys.executable, "-m", "fhir_adapter.cli.main", "serve", "--port", str(port), "--fhir",
                             sample_loaded, "--config", str(config), "--database", f"sqlite:///{tmp_path / 's.db'}"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                if httpx.get(f"{base}/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        r = httpx.get(f"{base}/v1/feed", headers={"X-API-Key": "serve-test-key-0123456789"}, timeout=5)
        assert r.status_code == 200 and r.json()["entries"] == []
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert f"serving on http://127.0.0.1:{port}" in out and "1 API keys" in out


def test_bad_settings_stop_serve_with_a_message(tmp_path: Path) -> None:
    import subprocess
    import sys

    bad = tmp_path / "bad.json"
    bad.write_text('{"port": "eighty"}')
    done = subprocess.run([sys.executable, "-m", "fhir_adapter.cli.main", "serve", "--config", str(bad)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "port: Input should be a valid integer" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_cli_imports_no_service_library() -> None:
    import subprocess
    import sys

    code = ("import sys; from fhir_adapter.cli.main import build_parser; build_parser(); "
            "bad = [m for m in ('fastapi', 'uvicorn', 'sqlalchemy', 'pydantic_settings', 'prometheus_client') "
            "if m in sys.modules]; print(bad); sys.exit(3 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
