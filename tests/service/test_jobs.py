"""Population screen jobs: the same results as ``fhir-adapter screen``, paging, cancel, a source failing halfway
and resume, a job left running by a stopped service.

The FHIR server sources go through ``Gate``, a small HTTP proxy in front of the real server that can answer 503
or hold every request once a number of patients have been read (the job runs in its own process, so faults are
injected on the wire).
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests
from pydantic import Field

from fhir_adapter.client import FhirClient, ResourceNotFound
from fhir_adapter.paths import sample_dir
from fhir_adapter.sample.load import load_sample, read_resources, sample_files
from fhir_adapter.service.jobs import JobParamError, JobRunner, JobStateError, prepare, status_counts
from fhir_adapter.service.settings import ServiceSettings
from fhir_adapter.service.store import Job, Store

ROOT = Path(__file__).resolve().parents[2]
STUDY, AS_OF = "NCT07377058", "2026-06-30"
SITE = sample_dir().parent / "site-mappings.json"  # the sample's local codes, on the server too
SAMPLE_IDS = sorted(r["id"] for r in read_resources(sample_dir() / "Patient.ndjson"))


class JobSettings(ServiceSettings):
    """The service settings plus the directory file sources may come from."""

    job_source_dirs: list[Path] = Field(default_factory=list)


# -- fixtures ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli_results() -> list[dict[str, Any]]:
    """``fhir-adapter screen`` on the sample, one result per patient in its order."""
    done = subprocess.run([sys.executable, "-m", "fhir_adapter.cli.main", "screen", "--study", STUDY,
                           "--source", "sample", "--as-of", AS_OF, "--workers", "1"],
                          capture_output=True, check=True, cwd=ROOT, timeout=120)
    return [orjson.loads(line) for line in done.stdout.splitlines()]


@pytest.fixture(scope="module")
def sample_server(fhir_base: str) -> str:
    """The real FHIR server, holding the built-in sample (loaded once; loading is idempotent)."""
    last = list(read_resources(sample_files()[-1]))[-1]
    with FhirClient(fhir_base) as client:
        try:
            client.read(last["resourceType"], last["id"])
        except ResourceNotFound:
            load_sample(client, batch_size=1000)
    return fhir_base


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
                    if gate.mode == "fail":
                        return self._send(503, b'{"resourceType":"OperationOutcome"}')
                    gate.open.wait(60)
                got = requests.get(gate.upstream + path, headers={"Accept": "application/fhir+json"}, timeout=30)
                self._send(got.status_code, got.content.replace(gate.upstream.encode(), gate.base.encode()))

            def _send(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler


@pytest.fixture
def gate(sample_server: str) -> Iterator[Gate]:
    g = Gate(sample_server)
    yield g
    g.close()


@pytest.fixture
def settings(tmp_path: Path, gate: Gate) -> JobSettings:
    (tmp_path / "exports").mkdir()
    return JobSettings(fhir_base=gate.base, fhir_max_attempts=1, database_url=f"sqlite:///{tmp_path / 'state.db'}",
                       job_source_dirs=[tmp_path / "exports"], site=SITE)


@pytest.fixture
def runner(store: Store, settings: JobSettings) -> Iterator[JobRunner]:
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


def test_a_sample_job_gives_what_the_cli_gives(runner: JobRunner, store: Store, settings: JobSettings,
                                               cli_results: list[dict[str, Any]]) -> None:
    job = runner.submit(prepare({"source": "sample", "study": "promis-mda5", "as_of": AS_OF}, settings))
    done = wait_for(store, job.id, "succeeded")
    assert (done.done, done.total, done.skipped, done.error) == (99, 99, 0, None)
    results = all_results(store, job.id)
    assert len(cli_results) == 99
    assert results == cli_results  # every patient's JSON, in the CLI's order
    assert status_counts(store, job.id) == {"candidate": 26, "ineligible": 66, "potential-candidate": 7}
    # each result went to the feed once, from this job
    feed = store.feed(0, 1000, study=STUDY)
    assert [e.result for e in feed] == results and {e.origin for e in feed} == {f"job:{job.id}"}
    # the same screen again changes nothing in the feed
    again = runner.submit(prepare({"source": "sample", "study": STUDY, "as_of": AS_OF}, settings))
    assert wait_for(store, again.id, "succeeded").done == 99
    assert store.last_seq() == feed[-1].seq


def test_a_server_job_that_fails_halfway_records_how_far_it_got_and_resumes(
        runner: JobRunner, store: Store, settings: JobSettings, gate: Gate,
        cli_results: list[dict[str, Any]]) -> None:
    patients = SAMPLE_IDS[:45]
    gate.after(12, "fail")  # the 13th patient on: 503; 20 failed patients in a row stop the source
    job = runner.submit(prepare({"patients": patients, "study": STUDY, "as_of": AS_OF}, settings))
    failed = wait_for(store, job.id, "failed")
    assert failed.done == 12 and failed.total == 45
    assert "20 patients in a row could not be read" in failed.error
    first = all_results(store, job.id)
    assert [r["patient"] for r in first] == [f"Patient/{p}" for p in patients[:12]]

    gate.release()
    runner.resume(job.id)
    finished = wait_for(store, job.id, "succeeded")
    results = all_results(store, job.id)
    assert finished.done == 45 and finished.error is None
    assert results[:12] == first
    assert sorted(r["patient"] for r in results) == sorted(f"Patient/{p}" for p in patients)  # none twice
    expected = {r["patient"]: r for r in cli_results}
    assert all(r == expected[r["patient"]] for r in results)  # a server gives what the files give


def test_cancel_stops_a_running_job_between_batches(runner: JobRunner, store: Store, settings: JobSettings,
                                                    gate: Gate) -> None:
    gate.after(10, "hold")  # the job hangs after 10 patients, as on a slow server
    job = runner.submit(prepare({"patients": SAMPLE_IDS[:30], "study": STUDY, "as_of": AS_OF}, settings))
    deadline = time.monotonic() + 30
    while store.get_job(job.id).done < 10:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert runner.cancel(job.id).cancel_requested
    cancelled = wait_for(store, job.id, "cancelled", timeout=10)
    gate.release()
    time.sleep(0.5)
    assert cancelled.done == 10 == len(all_results(store, job.id)) == store.get_job(job.id).done
    with pytest.raises(JobStateError):
        runner.resume(wait_for(store, runner.submit(
            prepare({"source": "sample", "study": STUDY, "as_of": AS_OF}, settings)).id, "succeeded").id)
    # a cancelled job can be resumed to finish
    runner.resume(job.id)
    assert wait_for(store, job.id, "succeeded").done == 30
    assert len(all_results(store, job.id)) == 30


def test_a_queued_job_is_cancelled_at_once(store: Store, settings: JobSettings) -> None:
    runner = JobRunner(store, settings)  # not started: the job stays queued
    job = runner.submit(prepare({"source": "sample", "study": STUDY, "as_of": AS_OF}, settings))
    assert runner.cancel(job.id).status == "cancelled"
    assert runner.cancel("nope") is None and runner.resume("nope") is None


def test_a_job_left_running_by_a_dead_service_is_interrupted_and_resumes(
        store: Store, settings: JobSettings, gate: Gate, tmp_path: Path) -> None:
    """A service process killed mid-job (SIGKILL: no clean-up) leaves the job running; the next start marks it
    interrupted, and resume finishes it without a duplicate."""
    gate.after(10, "hold")
    job_id = store.create_job(prepare({"patients": SAMPLE_IDS[:25], "study": STUDY, "as_of": AS_OF}, settings))
    script = (
        "import sys, time\n"
        "from fhir_adapter.service.store import Store\n"
        "from fhir_adapter.service.jobs import JobRunner\n"
        "from tests.service.test_jobs import JobSettings\n"
        f"settings = JobSettings.model_validate_json({settings.model_dump_json()!r})\n"
        f"r = JobRunner(Store({settings.database_url!r}), settings, batch_size=5, flush_seconds=0.2)\n"
        "r.start()\n"
        "time.sleep(600)\n")
    service = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT)
    try:
        deadline = time.monotonic() + 30
        while store.get_job(job_id).done < 10:
            assert time.monotonic() < deadline and service.poll() is None
            time.sleep(0.05)
    finally:
        service.kill()
        service.wait()
    assert store.get_job(job_id).status == "running"  # nobody said otherwise
    gate.release()

    restarted = JobRunner(store, settings, flush_seconds=0.2, poll_seconds=0.1)
    restarted.start()
    try:
        interrupted = store.get_job(job_id)
        assert interrupted.status == "interrupted" and interrupted.done == 10
        restarted.resume(job_id)
        assert wait_for(store, job_id, "succeeded").done == 25
    finally:
        restarted.stop()
    patients = [r["patient"] for r in all_results(store, job_id)]
    assert sorted(patients) == sorted(f"Patient/{p}" for p in SAMPLE_IDS[:25])


def test_stopping_the_service_interrupts_the_running_job(store: Store, settings: JobSettings, gate: Gate) -> None:
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
                                                                           settings: JobSettings) -> None:
    """With several service processes, a running job is another process's until its heartbeat is stale."""
    job_id = store.create_job(prepare({"source": "sample", "study": STUDY, "as_of": AS_OF}, settings))
    store.update_job(job_id, status="running")
    shared = JobRunner(store, settings, exclusive=False, stale_after=0.5)
    assert shared.recover() == 0 and store.get_job(job_id).status == "running"
    time.sleep(0.6)
    assert shared.recover() == 1 and store.get_job(job_id).status == "interrupted"


def test_a_file_source_that_disappears_fails_the_job(runner: JobRunner, store: Store, settings: JobSettings,
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
    ({"study": STUDY, "source": "http://127.0.0.1:9/fhir"}, "source", "only the configured FHIR server"),
    ({"study": STUDY, "source": "sample", "patients": ["ok", "not an id"]}, "patients", "not a FHIR id"),
    ({"study": STUDY, "source": "sample", "patients": []}, "patients", "a list of 1 to"),
    ({"study": STUDY, "source": "sample", "write_back": True}, "write_back", "not enabled"),
])
def test_bad_parameters_are_named(settings: JobSettings, params: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(JobParamError) as err:
        prepare(params, settings)
    assert err.value.field == field and message in str(err.value)


def test_parameters_are_normalised(settings: JobSettings, gate: Gate) -> None:
    assert prepare({"study": "Promis-MDA5", "as_of": AS_OF, "patients": ["a", "b", "a"]}, settings) == {
        "source": "server", "study": STUDY, "as_of": AS_OF, "randomization": None, "patients": ["a", "b"],
        "settings": {}, "write_back": False}
    assert prepare({"study": STUDY, "source": gate.base + "/"}, settings)["source"] == "server"
    no_server = JobSettings(database_url=settings.database_url)
    with pytest.raises(JobParamError, match="no FHIR server is configured"):
        prepare({"study": STUDY}, no_server)
    with pytest.raises(JobParamError, match="file sources are not enabled"):
        prepare({"study": STUDY, "source": "/tmp"}, no_server)
