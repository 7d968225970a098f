"""Population screen jobs: the same results as ``fhir-adapter screen``, paging, cancel, a source failing halfway
and resume, a job left running by a stopped service.

The FHIR server sources go through ``Gate``, a small HTTP proxy in front of the real server that can answer 503
or hold every request once a number of patients have been read (the job runs in its own process, so faults are
injected on the wire).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests
from fastapi.testclient import TestClient

from fhir_adapter.paths import sample_dir
from fhir_adapter.sample.load import read_resources
from fhir_adapter.service.jobs import JobParamError, JobRunner, prepare
from fhir_adapter.service.settings import ServiceSettings
from fhir_adapter.service.store import Job, Store

ROOT = Path(__file__).resolve().parents[2]
STUDY, AS_OF = "NCT07377058", "2026-06-30"
SITE = sample_dir().parent / "site-mappings.json"  # the sample's local codes, on the server too
SAMPLE_IDS = sorted(r["id"] for r in read_resources(sample_dir() / "Patient.ndjson"))


# -- fixtures ----------------------------------------------------------------------------------------------


def _screen(*options: str) -> list[dict[str, Any]]:
    done = subprocess.run([sys.executable, "-m", "fhir_adapter.cli.main", "screen", "--study", STUDY,
                           "--source", "sample", "--as-of", AS_OF, "--workers", "1", *options],
                          capture_output=True, check=True, cwd=ROOT, timeout=120)
    return [orjson.loads(line) for line in done.stdout.splitlines()]


@pytest.fixture(scope="module")
def cli_results() -> list[dict[str, Any]]:
    """``fhir-adapter screen`` on the sample, one result per patient in its order."""
    return _screen()


@pytest.fixture(scope="module")
def cli_full_results() -> list[dict[str, Any]]:
    """``fhir-adapter screen --full-history`` on the sample: what a server source gives (every Observation read)."""
    return _screen("--full-history")


class Gate:
    """An HTTP proxy to the FHIR server that fails (503) or holds every request once ``limit`` Patients were read.

    ``mode`` is "pass", "fail" or "hold"; ``release()`` lets held requests through and stops failing.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.mode, self.limit, self.patients_read = "pass", None, 0
        self.open = threading.Event()
        self.open.set()
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}/fhir"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def after(self, patients: int, mode: str) -> None:
        with self.lock:
            self.mode, self.limit, self.patients_read = mode, patients, 0
            if mode == "hold":
                self.open.clear()

    def release(self) -> None:
        with self.lock:
            self.mode, self.limit = "pass", None
        self.open.set()

    def close(self) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()

    def _tripped(self, path: str) -> bool:
        with self.lock:
            if re.search(r"/Patient/[^/?]+$", path):
                self.patients_read += 1
            return self.limit is not None and self.patients_read > self.limit

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        gate = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.removeprefix("/fhir")
                if gate._tripped(path.split("?")[0]):
                    if gate.mode == "fail":  # Retry-After 0: a client that retries does so at once
                        return self._send(503, b'{"resourceType":"OperationOutcome"}', {"Retry-After": "0"})
                    gate.open.wait(60)
                got = requests.get(gate.upstream + path, headers={"Accept": "application/fhir+json"}, timeout=30)
                self._send(got.status_code, got.content.replace(gate.upstream.encode(), gate.base.encode()))

            def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler


@pytest.fixture
def gate(sample_loaded: str) -> Iterator[Gate]:
    """A Gate in front of the real FHIR server holding the sample (``sample_loaded``: tests/service/conftest.py)."""
    g = Gate(sample_loaded)
    yield g
    g.close()


@pytest.fixture
def settings(tmp_path: Path, gate: Gate) -> ServiceSettings:
    (tmp_path / "exports").mkdir()
    return ServiceSettings(fhir_base=gate.base, fhir_max_attempts=1, database_url=f"sqlite:///{tmp_path / 'state.db'}",
                           job_source_dirs=[tmp_path / "exports"], site=SITE, poll_interval_seconds=0)


@pytest.fixture
def runner(store: Store, settings: ServiceSettings) -> Iterator[JobRunner]:
    r = JobRunner(store, settings, batch_size=10, flush_seconds=0.2, poll_seconds=0.1)
    r.start()
    yield r
    r.stop()


def wait_for(store: Store, job_id: str, *statuses: str, timeout: float = 60) -> Job:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = store.get_job(job_id)
        assert job is not None
        if job.status in statuses:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still {job.status}, not {statuses}")


def all_results(store: Store, job_id: str) -> list[dict[str, Any]]:
    return store.job_results(job_id, 0, 100_000)


# -- tests -------------------------------------------------------------------------------------------------


def test_a_queued_job_is_cancelled_at_once(store: Store, settings: ServiceSettings) -> None:
    runner = JobRunner(store, settings)  # not started: the job stays queued
    job = runner.submit(prepare({"source": "sample", "study": STUDY, "as_of": AS_OF}, settings))
    assert runner.cancel(job.id).status == "cancelled"
    assert runner.cancel("nope") is None and runner.resume("nope") is None


def test_stopping_the_service_interrupts_the_running_job(store: Store, settings: ServiceSettings, gate: Gate) -> None:
    gate.after(5, "hold")
    runner = JobRunner(store, settings, batch_size=5, flush_seconds=0.2, poll_seconds=0.1)
    runner.start()
    job = runner.submit(prepare({"patients": SAMPLE_IDS[:20], "study": STUDY, "as_of": AS_OF}, settings))
    deadline = time.monotonic() + 30
    while store.get_job(job.id).done < 5:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    runner.stop()
    stopped = store.get_job(job.id)
    assert stopped.status == "interrupted" and stopped.done == 5
    assert "resume" in stopped.error


def test_a_stale_running_job_is_interrupted_only_after_its_heartbeat_stops(store: Store,
                                                                           settings: ServiceSettings) -> None:
    """With several service processes, a running job is another process's until its heartbeat is stale."""
    job_id = store.create_job(prepare({"source": "sample", "study": STUDY, "as_of": AS_OF}, settings))
    store.update_job(job_id, status="running")
    shared = JobRunner(store, settings, exclusive=False, stale_after=0.5)
    assert shared.recover() == 0 and store.get_job(job_id).status == "running"
    time.sleep(0.6)
    assert shared.recover() == 1 and store.get_job(job_id).status == "interrupted"


def test_two_service_processes_share_the_jobs_without_running_one_twice(settings: ServiceSettings) -> None:
    """``serve --workers 2``: two runners on one database; each job is claimed by one of them only."""
    stores = [Store(settings.database_url) for _ in range(2)]
    stores[0].create_all()
    runners = [JobRunner(st, settings, exclusive=False, flush_seconds=0.2, poll_seconds=0.05) for st in stores]
    for r in runners:
        r.start()
    try:
        params = prepare({"source": "sample", "study": STUDY, "as_of": AS_OF,
                          "patients": ["mda5-ild-01", "misc-deceased", "excl-e12-mp-pulse"]}, settings)
        jobs = [runners[i % 2].submit(params) for i in range(4)]
        for job in jobs:
            assert wait_for(stores[0], job.id, "succeeded", "failed").status == "succeeded"
        assert [len(all_results(stores[0], job.id)) for job in jobs] == [3, 3, 3, 3]
    finally:
        for r, st in zip(runners, stores, strict=True):
            r.stop()
            st.close()


def test_a_file_source_inside_an_allowed_directory(runner: JobRunner, store: Store, settings: ServiceSettings,
                                                   tmp_path: Path, cli_results: list[dict[str, Any]],
                                                   cli_full_results: list[dict[str, Any]]) -> None:
    """An NDJSON export under job_source_dirs, with one line that is not JSON: skipped and counted. Screened as
    ``fhir-adapter screen`` screens it: old Observations skipped unparsed, unless ``full_history``."""
    folder = tmp_path / "exports" / "2026-06"
    folder.mkdir()
    for f in sample_dir().glob("*.ndjson"):
        (folder / f.name).write_bytes(f.read_bytes())
    with (folder / "Observation.ndjson").open("ab") as fh:
        fh.write(b"{not json\n")
    wanted = {"Patient/mda5-ild-01", "Patient/misc-missing-labs"}
    for full_history, expected in ((False, cli_results), (True, cli_full_results)):
        job = runner.submit(prepare({"source": "2026-06", "study": STUDY, "as_of": AS_OF, "full_history": full_history,
                                     "patients": ["mda5-ild-01", "misc-missing-labs"]}, settings))
        done = wait_for(store, job.id, "succeeded", "failed")
        assert (done.status, done.done, done.total, done.skipped) == ("succeeded", 2, 2, 1)
        assert all_results(store, job.id) == [r for r in expected if r["patient"] in wanted]
    assert [r for r in cli_results if r["patient"] in wanted] != [r for r in cli_full_results if r["patient"] in wanted]


def test_a_job_screens_the_entry_cohort_unless_all_criteria(runner: JobRunner, store: Store,
                                                            settings: ServiceSettings,
                                                            cli_results: list[dict[str, Any]]) -> None:
    """By default a job gives a patient out of the entry cohort the CLI's short result (I2 only); with
    ``all_criteria`` every criterion, as ``screen --all-criteria``; the statuses are the same."""
    patients = ["decoy-dm-mda5neg-noild", "mda5-ild-01"]
    wanted = {f"Patient/{p}" for p in patients}
    full = [r for r in _screen("--all-criteria", "--patient", patients[0], "--patient", patients[1])]
    for all_criteria, expected in ((False, [r for r in cli_results if r["patient"] in wanted]), (True, full)):
        job = runner.submit(prepare({"source": "sample", "study": STUDY, "as_of": AS_OF, "patients": patients,
                                     "all_criteria": all_criteria}, settings))
        done = wait_for(store, job.id, "succeeded", "failed")
        assert (done.status, done.done) == ("succeeded", 2) and done.params["all_criteria"] is all_criteria
        got = {r["patient"]: r for r in all_results(store, job.id)}
        assert got == {r["patient"]: r for r in expected}
        assert store.job_cohort_counts(job.id, ["I2"]) == {"I2": 1}  # the short result or every criterion
        assert store.job_cohort_counts(job.id, ["I1", "I2"]) == {"I2": 1} and store.job_cohort_counts(job.id, []) == {}
        decoy = got["Patient/decoy-dm-mda5neg-noild"]
        assert decoy["cohort"] == "out" and decoy["status"] == "ineligible"
        assert (list(decoy["criteria"]) == ["I2"]) is not all_criteria
        assert got["Patient/mda5-ild-01"]["cohort"] == "in"


def test_resuming_a_whole_server_job_lists_only_the_patients_still_to_do(gate: Gate) -> None:
    from fhir_adapter.service.jobs_worker import server_patient_ids
    from fhir_adapter.sources.server import ServerSource

    with ServerSource(gate.base) as source:
        ids = [pid for chunk in server_patient_ids(source, set(SAMPLE_IDS[1:]), chunk=50) for pid in chunk]
    assert SAMPLE_IDS[0] in ids and not set(SAMPLE_IDS[1:]) & set(ids)
    assert len(ids) == len(set(ids))


def test_a_job_writes_back_when_asked(store: Store, settings: ServiceSettings, sample_loaded: str, tag: str) -> None:
    """write_back: each result goes to the FHIR server as the CLI's --write-back sends it; a rerun makes no copy."""
    from fhir_adapter.client import FhirClient
    from fhir_adapter.writeback.build import SUBJECT_SYSTEM

    pid = f"jobwb-{tag}"
    settings = settings.model_copy(update={"fhir_base": sample_loaded, "write_back": True})
    params = prepare({"patients": [pid], "study": STUDY, "as_of": AS_OF, "write_back": True}, settings)
    runner = JobRunner(store, settings, flush_seconds=0.2, poll_seconds=0.1)
    runner.start()
    with FhirClient(sample_loaded) as fhir:
        try:
            fhir.update({"resourceType": "Patient", "id": pid, "gender": "female", "birthDate": "1980-02-01"})
            done = wait_for(store, runner.submit(params).id, "succeeded", "failed")
            assert (done.status, done.done, done.error) == ("succeeded", 1, None)
            again = wait_for(store, runner.submit(params).id, "succeeded", "failed")
            assert (again.status, again.error) == ("succeeded", None)
        finally:
            runner.stop()
        subjects = list(fhir.search("ResearchSubject", {"identifier": f"{SUBJECT_SYSTEM}|{STUDY}/{pid}"}))
    assert len(subjects) == 1 and subjects[0]["individual"]["reference"] == f"Patient/{pid}"


def test_a_file_source_that_disappears_fails_the_job(runner: JobRunner, store: Store, settings: ServiceSettings,
                                                     tmp_path: Path) -> None:
    folder = tmp_path / "exports" / "export1"
    folder.mkdir()
    (folder / "Patient.ndjson").write_bytes((sample_dir() / "Patient.ndjson").read_bytes())
    params = prepare({"source": "export1", "study": STUDY, "as_of": AS_OF}, settings)
    assert params["source"] == str(folder.resolve())
    (folder / "Patient.ndjson").unlink()
    job = runner.submit(params)
    failed = wait_for(store, job.id, "failed")
    assert failed.done == 0 and "no Bundle files" in failed.error  # nothing left to read there


@pytest.mark.parametrize("params, field, message", [
    ({"study": "no-such-study", "source": "sample"}, "study", "unknown study"),
    ({"study": "/etc/passwd.json", "source": "sample"}, "study", "unknown study"),
    ({"source": "sample"}, "study", "required"),
    ({"study": STUDY, "source": "sample", "as_of": "2026-02-30"}, "as_of", "not a date"),
    ({"study": STUDY, "source": "sample", "as_of": AS_OF, "randomization": "2026-06-01"}, "randomization",
     "before as_of"),
    ({"study": STUDY, "source": "sample", "settings": {"nope": 1}}, "settings", "unknown study setting"),
    ({"study": STUDY, "source": "/etc"}, "source", "outside the directories"),
    ({"study": STUDY, "source": "../../etc"}, "source", "outside the directories"),
    ({"study": STUDY, "source": "missing"}, "source", "no such file or folder"),
    ({"study": STUDY, "source": "~nosuchuser/export"}, "source", "no such file or folder"),
    ({"study": STUDY, "source": "x" * 300}, "source", "not a path jobs can read"),
    ({"study": STUDY, "source": "sample", "settings": {"lab_lookback_days": "28"}}, "settings",
     "study setting lab_lookback_days: expected a value like 28"),
    ({"study": STUDY, "source": "sample", "settings": {"e3h_egfr_proxy": 1}}, "settings", "e3h_egfr_proxy"),
    ({"study": STUDY, "source": "http://127.0.0.1:9/fhir"}, "source", "only the configured FHIR server"),
    ({"study": STUDY, "source": "sample", "patients": ["ok", "not an id"]}, "patients", "not a FHIR id"),
    ({"study": STUDY, "source": "sample", "patients": []}, "patients", "a list of 1 to"),
    ({"study": STUDY, "source": "sample", "write_back": True}, "write_back", "not enabled"),
])
def test_bad_parameters_are_named(settings: ServiceSettings, params: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(JobParamError) as err:
        prepare(params, settings)
    assert err.value.field == field and message in str(err.value)


def test_parameters_are_normalised(settings: ServiceSettings, gate: Gate) -> None:
    assert prepare({"study": "Promis-MDA5", "as_of": AS_OF, "patients": ["a", "b", "a"]}, settings) == {
        "source": "server", "study": STUDY, "as_of": AS_OF, "randomization": None, "patients": ["a", "b"],
        "settings": {}, "write_back": False, "full_history": False, "all_criteria": False}
    assert prepare({"study": STUDY, "source": gate.base + "/"}, settings)["source"] == "server"
    assert prepare({"study": STUDY, "all_criteria": True}, settings)["all_criteria"] is True
    one_study = settings.model_copy(update={"studies": [STUDY]})
    with pytest.raises(JobParamError, match="not one this service evaluates") as err:
        prepare({"study": "tofacitinib"}, one_study)
    assert err.value.field == "study"
    no_server = ServiceSettings(database_url=settings.database_url)
    with pytest.raises(JobParamError, match="no FHIR server is configured"):
        prepare({"study": STUDY}, no_server)
    with pytest.raises(JobParamError, match="file sources are not enabled"):
        prepare({"study": STUDY, "source": "/tmp"}, no_server)


# -- through the application -------------------------------------------------------------------------------


@pytest.fixture
def app_settings(make_settings: Callable[..., ServiceSettings], gate: Gate) -> ServiceSettings:
    return make_settings(fhir_base=gate.base, fhir_max_attempts=2)


@pytest.fixture
def client(app_settings: ServiceSettings) -> Iterator[TestClient]:
    from fhir_adapter.service.app import create_app

    with TestClient(create_app(app_settings)) as c:
        yield c


def poll(client: TestClient, url: str, headers: dict[str, str], *statuses: str, timeout: float = 60,
         done: int | None = None) -> dict[str, Any]:
    """GET the job until its status is one of ``statuses`` (or, with ``done``, that many patients are done)."""
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(url, headers=headers).json()
        if job["status"] in statuses or (done is not None and job["progress"]["done"] >= done):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.05)


def pages(client: TestClient, url: str, headers: dict[str, str]) -> list[dict[str, Any]]:
    """Every result, following ``next``."""
    results: list[dict[str, Any]] = []
    while url:
        page = client.get(url, headers=headers).json()
        results += page["results"]
        url = page["next"]
    return results


def test_api_a_sample_job_from_submit_to_paged_results(client: TestClient, auth: Callable[..., dict[str, str]],
                                                       cli_results: list[dict[str, Any]]) -> None:
    r = client.post("/v1/jobs", json={"source": "sample", "study": "promis-mda5", "as_of": AS_OF}, headers=auth("jobs"))
    assert r.status_code == 202 and r.headers["Location"] == f"/v1/jobs/{r.json()['id']}"
    assert r.json()["status"] in ("queued", "running") and r.json()["params"]["study"] == STUDY
    job = poll(client, r.headers["Location"], auth("reader"), "succeeded", "failed")
    n = len(cli_results)  # every sample patient (the CLI's results are checked against scenarios.json elsewhere)
    statuses = Counter(x["status"] for x in cli_results)
    assert job["status"] == "succeeded" and job["progress"] == {"done": n, "total": n, "skipped": 0}
    assert job["counts"] == dict(statuses) and statuses["candidate"] > 20
    out = Counter(next(iter(x["criteria"])) for x in cli_results if x["cohort"] == "out")
    assert job["out_of_cohort"] == dict(out) == {"I2": 6}  # by the entry criterion that ruled them out
    results = pages(client, f"{job['links']['results']}?limit=7", auth("reader"))
    assert results == cli_results  # each once, in order, the CLI's JSON
    last = client.get(f"{job['links']['results']}?offset={n - 1}&limit=7", headers=auth("reader")).json()
    assert len(last["results"]) == 1 and last["next"] is None
    assert client.get(f"{job['links']['results']}?offset={n}", headers=auth("reader")).json()["results"] == []
    listed = client.get("/v1/jobs", headers=auth("reader")).json()["jobs"]
    assert [j["id"] for j in listed] == [job["id"]] and listed[0]["progress"]["done"] == n
    page = client.get("/v1/feed?limit=1000&study=NCT07377058", headers=auth("reader")).json()
    feed = page["entries"]
    assert [e["result"] for e in feed] == results and {e["origin"] for e in feed} == {f"job:{job['id']}"}
    metrics = client.get("/metrics", headers=auth()).text
    assert 'fhir_adapter_evaluations_total{kind="screening",origin="job",status="candidate",study="NCT07377058"} ' \
           f'{statuses["candidate"]}.0' in metrics
    # the same screen again: its own results, nothing new in the feed (it keeps only changes)
    again = client.post("/v1/jobs", json={"source": "sample", "study": STUDY, "as_of": AS_OF}, headers=auth("jobs"))
    assert poll(client, again.headers["Location"], auth("reader"), "succeeded")["progress"]["done"] == n
    assert client.get(f"/v1/feed?since={page['next']}", headers=auth("reader")).json()["entries"] == []


@pytest.mark.parametrize("body, field, status", [
    ({"source": "sample", "study": "no-such-study", "as_of": AS_OF}, "study", 422),  # not in the schema's enum
    ({"source": "sample", "study": STUDY, "as_of": "30/06/2026"}, "as_of", 400),
    ({"source": "/etc", "study": STUDY, "as_of": AS_OF}, "source", 400),
    ({"source": "https://example.org/fhir", "study": STUDY}, "source", 400),
    ({"source": "sample", "study": STUDY, "write_back": True}, "write_back", 400),  # not enabled in the settings
])
def test_api_bad_parameters_are_400_naming_the_field(client: TestClient, auth: Callable[..., dict[str, str]],
                                                     body: dict[str, Any], field: str, status: int) -> None:
    r = client.post("/v1/jobs", json=body, headers=auth())
    assert r.status_code == status, r.text
    assert r.json()["resourceType"] == "OperationOutcome" and r.json()["issue"][0]["expression"] == [field]


def test_api_refuses_without_the_scope_and_answers_404_for_an_unknown_job(
        client: TestClient, auth: Callable[..., dict[str, str]]) -> None:
    body = {"source": "sample", "study": STUDY, "as_of": AS_OF}
    assert client.post("/v1/jobs", json=body).status_code == 401
    assert client.post("/v1/jobs", json=body, headers=auth("reader")).status_code == 403
    assert client.post("/v1/jobs", json={**body, "write_back": True}, headers=auth("jobs")).status_code == 403
    assert client.get("/v1/jobs", headers=auth("jobs")).status_code == 403
    unknown = "0" * 32
    for method, path in [("GET", ""), ("GET", "/results"), ("POST", "/cancel"), ("POST", "/resume")]:
        r = client.request(method, f"/v1/jobs/{unknown}{path}", headers=auth())
        assert r.status_code == 404 and r.json()["issue"][0]["code"] == "not-found", (method, path)
    assert not client.get("/v1/jobs", headers=auth()).json()["jobs"]  # nothing was queued


def test_api_a_server_job_that_fails_halfway_records_how_far_it_got_and_resumes(
        client: TestClient, auth: Callable[..., dict[str, str]], gate: Gate, cli_full_results: list[dict[str, Any]],
        capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    patients = SAMPLE_IDS[:45]
    gate.after(12, "fail")  # the 13th patient on: 503; 20 failed patients in a row stop the source
    r = client.post("/v1/jobs", json={"study": STUDY, "as_of": AS_OF, "patients": patients}, headers=auth())
    url = r.headers["Location"]
    failed = poll(client, url, auth(), "failed", "succeeded")
    assert failed["status"] == "failed" and failed["progress"] == {"done": 12, "total": 45, "skipped": 20}
    assert "20 patients in a row could not be read" in failed["error"]
    retries = [line for line in client.get("/metrics", headers=auth()).text.splitlines()
               if line.startswith("fhir_adapter_fhir_retries_total")]
    assert retries == ["fhir_adapter_fhir_retries_total 20.0"]  # each failed patient's first request, sent twice
    first = pages(client, failed["links"]["results"], auth())
    assert [x["patient"] for x in first] == [f"Patient/{p}" for p in patients[:12]]

    gate.release()
    resumed = client.post(f"{url}/resume", headers=auth())
    assert resumed.status_code == 202 and resumed.json()["status"] in ("queued", "running")
    finished = poll(client, url, auth(), "succeeded", "failed")
    assert finished["status"] == "succeeded" and finished["progress"]["done"] == 45 and finished["error"] is None
    results = pages(client, finished["links"]["results"], auth())
    assert results[:12] == first
    assert sorted(x["patient"] for x in results) == [f"Patient/{p}" for p in patients]  # none twice
    expected = {x["patient"]: x for x in cli_full_results}
    assert all(x == expected[x["patient"]] for x in results)  # the server gives what the files give, all read
    # 33 patients skipped, 20 failed: not one of them named in the log (the service's or the job process's)
    logged = caplog.text + "".join(capfd.readouterr())
    assert not [p for p in patients if p in logged]


def test_api_cancel_then_resume(client: TestClient, auth: Callable[..., dict[str, str]], gate: Gate) -> None:
    gate.after(4, "hold")
    r = client.post("/v1/jobs", json={"study": STUDY, "as_of": AS_OF, "patients": SAMPLE_IDS[:12]},
                    headers=auth())
    url = r.headers["Location"]
    assert poll(client, url, auth(), "failed", done=4)["progress"]["done"] == 4
    assert client.post(f"{url}/cancel", headers=auth()).json()["cancel_requested"] is True
    cancelled = poll(client, url, auth(), "cancelled", timeout=10)
    gate.release()
    assert cancelled["progress"]["done"] == 4 == len(pages(client, cancelled["links"]["results"], auth()))
    assert client.post(f"{url}/resume", headers=auth()).status_code == 202
    finished = poll(client, url, auth(), "succeeded", "failed")
    assert finished["status"] == "succeeded" and finished["progress"]["done"] == 12
    patients = [x["patient"] for x in pages(client, finished["links"]["results"], auth())]
    assert sorted(patients) == [f"Patient/{p}" for p in SAMPLE_IDS[:12]]
    r = client.post(f"{url}/resume", headers=auth())
    assert r.status_code == 409 and r.json()["resourceType"] == "OperationOutcome"
    assert client.post(f"{url}/cancel", headers=auth()).status_code == 409


def test_a_job_left_running_by_a_killed_service_is_interrupted_and_resumes(
        app_settings: ServiceSettings, auth: Callable[..., dict[str, str]], gate: Gate) -> None:
    """``fhir-adapter serve`` killed (SIGKILL) mid-job leaves the job running; the next service marks it
    interrupted, and resuming it finishes the rest without a duplicate result."""
    import socket

    from fhir_adapter.service.app import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "FHIR_ADAPTER_DATABASE_URL": app_settings.database_url,
           "FHIR_ADAPTER_FHIR_BASE": gate.base, "FHIR_ADAPTER_SITE": str(SITE), "FHIR_ADAPTER_FHIR_MAX_ATTEMPTS": "1",
           "FHIR_ADAPTER_POLL_INTERVAL_SECONDS": "0", "FHIR_ADAPTER_PORT": str(port),
           "FHIR_ADAPTER_API_KEYS": orjson.dumps([{"name": "admin", "key": auth()["Authorization"][7:],
                                                   "scopes": ["jobs:run", "results:read"]}]).decode()}
    env.pop("FHIR_ADAPTER_CONFIG", None)
    gate.after(10, "hold")
    service = subprocess.Popen([sys.executable, "-m", "fhir_adapter.cli.main", "serve"], env=env, cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"{base}/health/live", timeout=1).raise_for_status()
                break
            except requests.RequestException:
                assert time.monotonic() < deadline and service.poll() is None
                time.sleep(0.1)
        r = requests.post(f"{base}/v1/jobs", json={"study": STUDY, "as_of": AS_OF, "patients": SAMPLE_IDS[:25]},
                          headers=auth(), timeout=10)
        url = r.headers["Location"]
        while requests.get(base + url, headers=auth(), timeout=10).json()["progress"]["done"] < 10:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        service.kill()
        service.wait()
    gate.release()
    with TestClient(create_app(app_settings)) as client:
        job = client.get(url, headers=auth()).json()
        assert job["status"] == "interrupted" and job["progress"]["done"] == 10 and "resume" in job["error"]
        assert client.post(f"{url}/resume", headers=auth()).status_code == 202
        job = poll(client, url, auth(), "succeeded", "failed")
        assert job["status"] == "succeeded" and job["progress"]["done"] == 25
        patients = [x["patient"] for x in pages(client, job["links"]["results"], auth())]
    assert sorted(patients) == [f"Patient/{p}" for p in SAMPLE_IDS[:25]]  # each once
