"""Population screen jobs: checking what a caller submits, and the runner that screens one job at a time.

A job screens a population (the configured FHIR server, the built-in sample, or an NDJSON folder or Bundle file
inside a directory the configuration allows) for one study, exactly as ``fhir-adapter screen`` does: the runner
starts ``jobs_worker`` in a separate process and stores what it reports, in order, in batches (every
``batch_size`` results or ``flush_seconds``): first each result to the feed (origin ``job:<id>``; the feed keeps
only changes), then to the job's results with its progress. So a crash between the two appends nothing twice.

Life of a job: ``queued`` -> ``running`` -> ``succeeded`` | ``failed`` (with the error and how far it got) |
``cancelled`` (``cancel`` asks; the runner stops between batches). A job left ``running`` by a service that
stopped or crashed becomes ``interrupted``. ``resume`` queues a failed, cancelled or interrupted job again; it
goes on from where it was, skipping the patients it already has results for.

Several service processes (``serve --workers N``) may share one database: a queued job is claimed with one
conditional UPDATE, and a running job whose heartbeat (``updated_at``, refreshed every ``flush_seconds``) is
older than ``stale_after`` is taken for dead and marked interrupted. With one process (``exclusive``) every
job still ``running`` at start-up is one the previous process left behind.
"""

from __future__ import annotations

import logging
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import IO, Any

import orjson

from fhir_adapter.service.evaluate import FHIR_ID
from fhir_adapter.service.fhir_server import server_block
from fhir_adapter.service.jobs_worker import SERVER, log_bug
from fhir_adapter.service.metrics import Metrics
from fhir_adapter.service.settings import ServiceSettings, study_id
from fhir_adapter.service.store import Job, Store, utcnow

log = logging.getLogger("fhir_adapter.service.jobs")

RESUMABLE = ("failed", "cancelled", "interrupted")
FINISHED = ("succeeded", "failed", "cancelled", "interrupted")
MAX_PATIENTS = 100_000
STOPPED = "the service stopped while the job was running; resume it to finish"


class JobParamError(ValueError):
    """A submitted job's parameter is wrong; ``field`` names it (the API answers 400 naming it)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class JobStateError(RuntimeError):
    """The job cannot do that now (resume a running job, say); the API answers 409."""


# -- checking a submission ---------------------------------------------------------------------------------


def allowed_dirs(settings: ServiceSettings) -> list[Path]:
    """The directories a job may read files from (``job_source_dirs`` in the settings; none by default)."""
    return [Path(d).expanduser().resolve() for d in settings.job_source_dirs]


def _source(spec: str | None, settings: ServiceSettings) -> str:
    """``server``, ``sample`` or the resolved path of a file source inside an allowed directory."""
    base = settings.fhir_base
    if spec is None or spec == SERVER or (spec.startswith(("http://", "https://")) and base
                                          and spec.rstrip("/") == str(base).rstrip("/")):
        if not base:
            raise JobParamError("source", "no FHIR server is configured (fhir_base): name another source")
        return SERVER
    if spec == "sample":
        return "sample"
    if spec.startswith(("http://", "https://")):
        raise JobParamError("source", "a job reads only the configured FHIR server, not another URL")
    dirs = allowed_dirs(settings)
    if not dirs:
        raise JobParamError("source", "file sources are not enabled (no job_source_dirs configured); "
                                      "use 'server' or 'sample'")
    if "\x00" in spec or not spec.strip():
        raise JobParamError("source", "not a file path")
    given = Path(spec)  # as given: "~" means nothing to a caller on another host
    for folder in dirs:
        try:
            path = (given if given.is_absolute() else folder / given).resolve()
            inside = path.is_relative_to(folder)
            found = inside and path.exists()
        except OSError as exc:  # a name too long, a loop of links
            raise JobParamError("source", f"not a path jobs can read ({exc.strerror or type(exc).__name__})"
                                ) from None
        if inside:
            if not found:
                raise JobParamError("source", f"no such file or folder in {folder}: {spec}")
            return str(path)
    raise JobParamError("source", "the path is outside the directories jobs may read (job_source_dirs)")


def _date(value: Any, field: str) -> date:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise JobParamError(field, f"not a date (YYYY-MM-DD): {value!r}") from None


def _same_kind(value: Any, default: Any) -> bool:
    """Whether ``value`` has the JSON type of a setting's ``default`` (a whole number will do for a decimal)."""
    if default is None:
        return True
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, int | float)
    return isinstance(value, type(default))


def prepare(params: dict[str, Any], settings: ServiceSettings) -> dict[str, Any]:
    """The job's stored parameters, checked and normalised (resolved source, study id, dates as ISO text).
    Raises ``JobParamError`` naming the first wrong parameter."""
    from fhir_adapter.errors import ConfigError
    from fhir_adapter.studies.definition import load_study

    study_name = params.get("study")
    if not isinstance(study_name, str) or not study_name.strip():
        raise JobParamError("study", "a study id or alias is required (NCT07377058/promis-mda5, NCT04966884)")
    sid = study_id(study_name)
    if sid is None:
        raise JobParamError("study", f"unknown study {study_name!r}")
    if sid not in settings.studies:
        raise JobParamError("study", f"study {sid} is not one this service evaluates (configured: "
                                     f"{', '.join(settings.studies)})")
    as_of = _date(params["as_of"], "as_of") if params.get("as_of") is not None else settings.today()
    randomization = params.get("randomization")
    if randomization is not None:
        randomization = _date(randomization, "randomization")
        if randomization < as_of:
            raise JobParamError("randomization", "randomization is before as_of (randomization follows screening)")
    overrides = params.get("settings") or {}
    if not isinstance(overrides, dict):
        raise JobParamError("settings", "study settings must be an object of NAME: VALUE")
    study = load_study(sid)
    try:
        study.with_settings(overrides)
    except ConfigError as exc:
        raise JobParamError("settings", str(exc)) from None
    for name, value in overrides.items():
        default = study.settings[name]
        if not _same_kind(value, default):
            raise JobParamError("settings", f"study setting {name}: expected a value like {default!r}")
    patients = params.get("patients")
    if patients is not None:
        if not isinstance(patients, list) or not patients or len(patients) > MAX_PATIENTS:
            raise JobParamError("patients", f"a list of 1 to {MAX_PATIENTS:,} Patient ids")
        bad = next((p for p in patients if not isinstance(p, str) or not re.fullmatch(FHIR_ID, p)), None)
        if bad is not None:
            raise JobParamError("patients", f"not a FHIR id: {bad!r}")
        patients = list(dict.fromkeys(patients))
    source = _source(params.get("source"), settings)
    write_back = bool(params.get("write_back"))
    if write_back and not settings.write_back:
        raise JobParamError("write_back", "write-back is not enabled in this service's configuration")
    if write_back and not settings.fhir_base:
        raise JobParamError("write_back", "write-back needs a configured FHIR server (fhir_base)")
    return {"source": source, "study": sid, "as_of": as_of.isoformat(),
            "randomization": randomization.isoformat() if randomization else None,
            "patients": patients, "settings": overrides, "write_back": write_back,
            "full_history": bool(params.get("full_history")), "all_criteria": bool(params.get("all_criteria"))}


def worker_spec(params: dict[str, Any], settings: ServiceSettings, skip: Iterable[str]) -> dict[str, Any]:
    """What ``jobs_worker`` needs: the job's parameters, the patients to skip, the server and site to use."""
    spec = {k: params.get(k) for k in ("source", "study", "as_of", "randomization", "patients", "settings",
                                         "write_back", "full_history", "all_criteria")}
    spec["skip"] = sorted(skip)
    spec["workers"] = settings.job_workers
    if params["source"] == "sample":
        from fhir_adapter.paths import sample_dir

        spec["site"] = str(sample_dir().parent / "site-mappings.json")
    else:
        spec["site"] = str(settings.site) if settings.site else None
    if settings.fhir_base:
        spec["server"] = server_block(settings)  # on the worker's standard input, never its command line
    return spec


# -- the runner --------------------------------------------------------------------------------------------


@dataclass
class _Progress:
    done: set[str]
    skipped_before: int
    skipped: int = 0
    total: int | None = None
    write_errors: int = 0
    retries: int = 0  # the worker's FHIR retries already added to the metrics

    @property
    def skipped_all(self) -> int:
        return self.skipped_before + self.skipped


class JobRunner:
    """Runs queued jobs one at a time in a background thread, each in a ``jobs_worker`` process."""

    def __init__(self, store: Store, settings: ServiceSettings, *, metrics: Metrics | None = None,
                 exclusive: bool | None = None, stale_after: float = 60.0, batch_size: int = 100,
                 flush_seconds: float = 1.0, poll_seconds: float = 1.0) -> None:
        self.store = store
        self.settings = settings
        self.metrics = metrics
        self.exclusive = settings.workers <= 1 if exclusive is None else exclusive
        self.stale_after = stale_after
        self.batch_size = batch_size
        self.flush_seconds = flush_seconds
        self.poll_seconds = poll_seconds
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self.current: str | None = None  # the id of the job this runner is running

    # -- control ---------------------------------------------------------------------------------------

    def start(self) -> None:
        """Mark the jobs a dead process left running as interrupted, then start the background thread."""
        self.recover(everything=self.exclusive)
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name="fhir-adapter-jobs", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread; a job it is running stops at once and becomes interrupted (resumable)."""
        self._stopping.set()
        self._wake.set()
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()  # the runner thread sees the end of its output and marks the job interrupted
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def submit(self, params: dict[str, Any], *, owner: str | None = None, max_active: int | None = None
               ) -> Job | None:
        """Queue a job with checked parameters (see ``prepare``) for ``owner`` (an API key's name); None when
        ``owner`` has ``max_active`` jobs queued or running already."""
        job_id = self.store.create_job(params, owner=owner, max_active=max_active)
        if job_id is None:
            return None
        self._wake.set()
        job = self.store.get_job(job_id)
        assert job is not None
        return job

    def cancel(self, job_id: str) -> Job | None:
        """Cancel a queued job at once, or ask the runner to stop a running one between batches."""
        job = self.store.get_job(job_id)
        if job is None:
            return None
        if not self.store.transition_job(job_id, ["queued"], status="cancelled", finished_at=utcnow(),
                                         cancel_requested=True):
            self.store.transition_job(job_id, ["running"], cancel_requested=True)
        return self.store.get_job(job_id)

    def resume(self, job_id: str, *, owner: str | None = None) -> Job | None:
        """Queue a failed, cancelled or interrupted job again (for ``owner``, when given); it skips the patients
        already done."""
        job = self.store.get_job(job_id)
        if job is None:
            return None
        who = {} if owner is None else {"owner": owner}
        if not self.store.transition_job(job_id, RESUMABLE, status="queued", cancel_requested=False, error=None,
                                         finished_at=None, **who):
            raise JobStateError(f"a {job.status} job cannot be resumed (only {', '.join(RESUMABLE)} ones)")
        self._wake.set()
        return self.store.get_job(job_id)

    def recover(self, *, everything: bool = False) -> int:
        """Mark running jobs whose heartbeat stopped (all running jobs with ``everything``) interrupted;
        their number. The job this runner is running is never touched."""
        idle_since = None if everything else utcnow() - timedelta(seconds=self.stale_after)
        n = self.store.interrupt_running_jobs(STOPPED, idle_since=idle_since, keep=self.current)
        if n:
            log.warning("%d job(s) left running by a stopped service marked interrupted", n)
        return n

    # -- the loop --------------------------------------------------------------------------------------

    def _loop(self) -> None:
        last_recover = time.monotonic()
        while not self._stopping.is_set():
            try:
                if not self.exclusive and time.monotonic() - last_recover > self.stale_after / 4:
                    self.recover()
                    last_recover = time.monotonic()
                job = self._claim_next()
                if job is not None:
                    self._run(job)
                    continue
            except Exception as exc:  # the runner must outlive a database hiccup; the next round tries again
                log_bug("job runner error", exc)
            self._wake.wait(self.poll_seconds)
            self._wake.clear()

    def _claim_next(self) -> Job | None:
        """The oldest queued job, now running and this runner's (None when there is none). Another process
        may claim a job first: then the next one is tried."""
        while (job := self.store.next_queued_job()) is not None:
            if self.store.transition_job(job.id, ["queued"], status="running", started_at=utcnow(),
                                         finished_at=None, error=None):
                return self.store.get_job(job.id)
        return None

    def _run(self, job: Job) -> None:
        """Run one job to its end (or until cancelled or stopped), storing results batch by batch."""
        self.current = job.id
        params = job.params
        done = self.store.job_patients_done(job.id)
        progress = _Progress(done=done, skipped_before=job.skipped if params["source"] == SERVER else 0,
                             total=job.total)
        log.info("job %s started (%s patients already done)", job.id, len(done))
        events: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=10_000)
        status, error, ended = "failed", None, False
        reader: threading.Thread | None = None
        try:
            spec = worker_spec(params, self.settings, done)
            self._proc = subprocess.Popen([sys.executable, "-m", "fhir_adapter.service.jobs_worker"],
                                          stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            assert self._proc.stdin is not None and self._proc.stdout is not None
            reader = threading.Thread(target=_read_events, args=(self._proc.stdout, events), daemon=True)
            reader.start()
            try:
                self._proc.stdin.write(orjson.dumps(spec))
                self._proc.stdin.close()
            except BrokenPipeError:
                pass  # the process died at once: the loop below reports how it ended
            status, error, ended = self._consume(job, params, events, progress)
        except Exception as exc:
            log_bug(f"job {job.id}: runner error", exc)
            status, error = "failed", f"internal error ({type(exc).__name__})"
        finally:
            code = self._end_process(graceful=ended)
            _drain(events, reader)
            self.current = None
        if status == "failed" and error is None:
            error = f"the job's process ended (exit status {code}) before finishing"
        if status == "succeeded" and progress.write_errors:
            error = "; ".join(e for e in (error, f"write-back: {progress.write_errors} patient(s) not written") if e)
        stored = self.store.job_result_count(job.id)  # what was stored, whatever the runner saw after that
        fields: dict[str, Any] = {"status": status, "done": stored, "skipped": progress.skipped_all, "error": error,
                                  "finished_at": utcnow()}
        if status == "succeeded":
            fields["total"] = progress.total if progress.total is not None else stored
        self.store.update_job(job.id, **fields)
        if status == "failed" and self.metrics is not None:
            self.metrics.errors.labels("job-failed").inc()
        log.info("job %s %s after %d patients", job.id, status, stored)

    def _consume(self, job: Job, params: dict[str, Any], events: queue.Queue[dict[str, Any] | None],
                 progress: _Progress) -> tuple[str, str | None, bool]:
        """Read the worker's events until its end; the job's final status, error, and whether the worker
        reported its end (else it is still running, or died)."""
        batch: list[tuple[str, dict[str, Any]]] = []
        origin = f"job:{job.id}"
        last_flush = time.monotonic()
        while True:
            timeout = max(0.0, last_flush + self.flush_seconds - time.monotonic())
            try:
                event = events.get(timeout=timeout)
            except queue.Empty:
                event = {}
            if event is None:  # the process closed its output without an end event
                self._flush(job.id, params["study"], origin, batch, progress)
                if self._stopping.is_set():
                    return "interrupted", STOPPED, False
                return "failed", None, False
            self._count_retries(event, progress)
            if "patient" in event:
                pid = event["patient"]
                progress.skipped = event.get("skipped", progress.skipped)
                if pid not in progress.done:  # never the same patient twice in one job
                    progress.done.add(pid)
                    batch.append((pid, event["result"]))
                if (event.get("write") or {}).get("error"):
                    progress.write_errors += 1
            elif "total" in event:
                progress.total = event["total"]
            elif "end" in event:
                progress.skipped = event.get("skipped", progress.skipped)
                self._flush(job.id, params["study"], origin, batch, progress)
                return event["end"], event.get("error"), True
            if len(batch) >= self.batch_size or time.monotonic() >= last_flush + self.flush_seconds:
                self._flush(job.id, params["study"], origin, batch, progress)
                last_flush = time.monotonic()
                if self._stopping.is_set():
                    return "interrupted", STOPPED, False
                current = self.store.get_job(job.id)
                if current is not None and current.cancel_requested:
                    return "cancelled", None, False

    def _flush(self, job_id: str, study: str, origin: str, batch: list[tuple[str, dict[str, Any]]],
               progress: _Progress) -> None:
        """Store a batch: the feed first, then the job's results and progress (also the job's heartbeat)."""
        for pid, result in batch:
            seq = self.store.append_result(study, "screening", pid, result, origin)
            if self.metrics is not None:
                self.metrics.evaluations.labels(study, "screening", str(result.get("status")), "job").inc()
                if seq is not None:
                    self.metrics.feed_appends.labels(study, "screening", "job").inc()
        self.store.add_job_results(job_id, batch)
        batch.clear()
        self.store.update_job(job_id, done=len(progress.done), skipped=progress.skipped_all, total=progress.total)

    def _count_retries(self, event: dict[str, Any], progress: _Progress) -> None:
        retries = event.get("retries")
        if isinstance(retries, int) and retries > progress.retries:
            if self.metrics is not None:
                self.metrics.fhir_retries.inc(retries - progress.retries)
            progress.retries = retries

    def _end_process(self, graceful: bool) -> int | None:
        """Wait for the worker process to exit after its end event (``graceful``: it is cleaning up), or stop it
        (SIGTERM, then SIGKILL after 5 s); its exit status."""
        proc = self._proc
        if proc is None:
            return None
        try:
            if not graceful:
                proc.terminate()
            proc.wait(10 if graceful else 5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        self._proc = None
        return proc.returncode


def _drain(events: queue.Queue[dict[str, Any] | None], reader: threading.Thread | None,
           timeout: float = 5.0) -> None:
    """Empty the event queue until the reader thread has ended, so that it is never left blocked on a full queue."""
    deadline = time.monotonic() + timeout
    while reader is not None and reader.is_alive() and time.monotonic() < deadline:
        try:
            events.get(timeout=0.1)
        except queue.Empty:
            continue


def _read_events(out: IO[bytes], events: queue.Queue[dict[str, Any] | None]) -> None:
    """The reader thread: the worker's event lines into ``events``; None at the end of its output."""
    try:
        for line in out:
            if line.strip():
                try:
                    events.put(orjson.loads(line))
                except orjson.JSONDecodeError:
                    log.error("job process wrote a line that is not an event; ignored")
    finally:
        events.put(None)
        out.close()
