"""The jobs endpoints (``/v1/jobs``): submit a population screen, follow it, page through its results, cancel
or resume it.

Submitting and cancelling need the scope ``jobs:run`` (a job that writes back also ``writeback``); reading needs
``results:read``. ``lifespan`` (entered by the app's own) starts the ``JobRunner`` (``app.state.jobs``) on the
app's store and settings and stops it on shutdown (a job it was running becomes ``interrupted``, resumable).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from fhir_adapter.service.errors import JSONResponse, ServiceError, documented
from fhir_adapter.service.jobs import FINISHED, JobParamError, JobRunner, JobStateError, prepare
from fhir_adapter.service.schemas import ScreeningResult, StudyName
from fhir_adapter.service.security import Principal, authorize, require
from fhir_adapter.service.store import Job

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled", "interrupted"]
JOB_ID = Path(description="the job's id", max_length=64, examples=["5d1f0c7e2b9a4e0f8c3d6a1b2c4e6f80"])

EXAMPLE_RESULT: dict[str, Any] = {
    "patient": "Patient/mda5-ild-01", "study": "NCT07377058", "as_of": "2026-06-30", "status": "candidate",
    "cohort": "in", "reason": "every criterion a machine can decide passes; a person decides the rest",
    "review": ["I2", "I3", "I6", "I7", "I8", "E2", "E8", "E9", "E16", "E18"],
    "criteria": {"I1": {"result": "met", "reason": "age 41, body weight 62 kg on 2026-06-20",
                        "evidence": ["Patient/mda5-ild-01", "Observation/mda5-ild-01-obs20"],
                        "protocol": "Inclusion 1: Age ≥ 18 years and < 65 years; ..."}},
}


class JobRequest(BaseModel):
    """A population screen: which patients (``source``, ``patients``), for which study, as of when."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"study": "NCT07377058", "as_of": "2026-06-30"},
        {"source": "sample", "study": "promis-mda5", "as_of": "2026-06-30", "randomization": "2026-07-14"},
        {"source": "server", "study": "NCT04966884", "settings": {"absent_records": "unknown"}},
    ]})

    source: str | None = Field(None, max_length=4096, description=(
        "'server' (the configured FHIR server, the default; its base URL is accepted too), 'sample' (the built-in "
        "synthetic population), or a Bulk Data NDJSON folder or file or a FHIR Bundle file inside one of the "
        "directories the configuration allows (job_source_dirs), as a path relative to it or absolute"))
    study: StudyName = Field(..., description="study id or alias, as the study file writes it")
    as_of: str | None = Field(None, max_length=32, description="screening date YYYY-MM-DD (default: the "
                              "service's as_of setting, today)", json_schema_extra={"format": "date"})
    randomization: str | None = Field(None, max_length=32, description="expected randomization date YYYY-MM-DD "
                                      "(default: as_of)", json_schema_extra={"format": "date"})
    patients: list[str] | None = Field(None, description="only these Patient ids (default: every patient)")
    settings: dict[str, Any] | None = Field(None, description="study setting overrides NAME: VALUE (see the "
                                            "study file), as --setting on the command line")
    write_back: StrictBool = Field(False, description="write each result to the FHIR server (needs the service's "
                             "write_back setting and the caller's 'writeback' scope)")
    full_history: StrictBool = Field(False, description="file sources: parse every Observation, also those older than "
                               "every look-back that reads them (skipped unparsed by default), as --full-history")
    all_criteria: StrictBool = Field(False, description="evaluate every criterion for every patient, as --all-criteria "
                               "(default: a patient out of the study's entry cohort, e.g. I2 not met, gets a short "
                               "result with that criterion only, \"cohort\": \"out\")")


class JobParams(BaseModel):
    """The parameters as checked and stored: the source resolved, the study by id, the dates fixed."""

    source: str = Field(description="'server', 'sample', or the resolved path of a file source")
    study: str
    as_of: str
    randomization: str | None = None
    patients: list[str] | None = None
    settings: dict[str, Any] = Field(default_factory=dict)
    write_back: bool = False
    full_history: bool = False
    all_criteria: bool = False


class JobProgress(BaseModel):
    done: int = Field(description="patients screened and stored so far")
    total: int | None = Field(None, description="patients in all, when known (a patient list, a server that "
                              "counts; a file source: at the end)")
    skipped: int = Field(description="resources the source skipped with problems (not JSON, no patient...)")


class JobLinks(BaseModel):
    self: str
    results: str


class JobOut(BaseModel):
    """A job: what it screens, how far it got, its results by status, and why it failed (when it did)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": "5d1f0c7e2b9a4e0f8c3d6a1b2c4e6f80", "status": "running",
        "params": {"source": "sample", "study": "NCT07377058", "as_of": "2026-06-30", "randomization": None,
                   "patients": None, "settings": {}, "write_back": False, "full_history": False,
                   "all_criteria": False},
        "progress": {"done": 40, "total": None, "skipped": 0},
        "counts": {"candidate": 11, "ineligible": 27, "potential-candidate": 2}, "out_of_cohort": {"I2": 19},
        "error": None, "cancel_requested": False, "created_at": "2026-06-30T08:00:00.120Z",
        "started_at": "2026-06-30T08:00:00.180Z", "finished_at": None,
        "links": {"self": "/v1/jobs/5d1f0c7e2b9a4e0f8c3d6a1b2c4e6f80",
                  "results": "/v1/jobs/5d1f0c7e2b9a4e0f8c3d6a1b2c4e6f80/results"}}]})

    id: str
    status: JobStatus = Field(description="queued, running, succeeded, failed (see error; resumable), cancelled "
                              "(resumable), interrupted (the service stopped while it ran; resumable)")
    params: JobParams
    progress: JobProgress
    counts: dict[str, int] | None = Field(None, description="results so far by screening status (one job only)")
    out_of_cohort: dict[str, int] | None = Field(None, description="of those, the patients out of the study's entry "
                                                 "cohort, by the entry criterion that ruled them out (one job only)")
    error: str | None = Field(None, description="why the job failed (the source's error), or what went wrong "
                              "beside the results (write-back)")
    cancel_requested: bool
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    links: JobLinks


class JobList(BaseModel):
    jobs: list[JobOut] = Field(description="the newest first")


class ResultsPage(BaseModel):
    """Results in the order the job produced them; follow ``next`` for the rest."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "job": "5d1f0c7e2b9a4e0f8c3d6a1b2c4e6f80", "status": "succeeded", "offset": 0, "limit": 1,
        "results": [EXAMPLE_RESULT],
        "next": "/v1/jobs/5d1f0c7e2b9a4e0f8c3d6a1b2c4e6f80/results?offset=1&limit=1"}]})

    job: str
    status: JobStatus
    offset: int
    limit: int
    results: list[ScreeningResult] = Field(description="one screening result per patient, the same JSON as "
                                           "`fhir-adapter screen` prints")
    next: str | None = Field(None, description="the next page; absent at the end of a finished job (a running "
                             "job's last page links on, to poll for more)")


# -- the runner's life with the app ------------------------------------------------------------------------


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start the job runner with the app (unless the app made its own), stop it at shutdown."""
    runner = getattr(app.state, "jobs", None)
    own = runner is None
    if own:
        runner = JobRunner(app.state.store, app.state.settings, metrics=getattr(app.state, "metrics", None))
        app.state.jobs = runner
        runner.start()
    try:
        yield
    finally:
        if own:
            runner.stop()
            del app.state.jobs


# the app includes it as it is (its other routes carry /v1 the same way) and enters ``lifespan`` in its own
router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=documented(401, 403))
_NO_JOB = {"_404": "no such job"}
_TOO_MANY = {429: {**documented(429)[429], "headers": {"Retry-After": {
    "description": "seconds to wait before submitting again", "schema": {"type": "integer"}}}}}

RunScope = Annotated[Principal, Depends(require("jobs:run"))]
ReadScope = Annotated[Principal, Depends(require("results:read"))]


def _runner(request: Request) -> JobRunner:
    return request.app.state.jobs  # type: ignore[no-any-return]


def _too_many(request: Request) -> ServiceError:
    settings = request.app.state.settings
    return ServiceError(429, f"this API key has {settings.max_jobs_per_key} jobs queued or running, the most it may "
                        "(setting max_jobs_per_key); retry when one has finished, or cancel one",
                        headers={"Retry-After": str(settings.retry_after_seconds)}, kind="too-many-jobs")


def _job(request: Request, job_id: str) -> Job:
    job = _runner(request).store.get_job(job_id)
    if job is None:
        raise ServiceError(404, f"no job {job_id}", expression=["id"])
    return job


def _out(request: Request, job: Job, *, counts: bool = True) -> JobOut:
    base = job_url(request, job.id)
    return JobOut(
        id=job.id, status=job.status, params=JobParams(**job.params),  # type: ignore[arg-type]
        progress=JobProgress(done=job.done, total=job.total, skipped=job.skipped),
        counts=_runner(request).store.job_status_counts(job.id) if counts else None,
        out_of_cohort=_runner(request).store.job_cohort_counts(job.id, _entry(job.params["study"])) if counts else None,
        error=job.error, cancel_requested=job.cancel_requested, created_at=job.created_at,
        started_at=job.started_at, finished_at=job.finished_at,
        links=JobLinks(self=base, results=f"{base}/results"))


def _entry(study: str) -> tuple[str, ...]:
    from fhir_adapter.studies.definition import load_study

    return load_study(study).entry


def job_url(request: Request, job_id: str) -> str:
    """``/v1/jobs/<id>`` (under whatever prefix the app and the proxy in front gave this router)."""
    return f"{request.scope.get('root_path', '')}{request.app.url_path_for('list_jobs')}/{job_id}"


@router.post("", status_code=202, response_model=JobOut, name="submit_job", summary="Submit a population screen",
             responses={202: {"description": "queued", "headers": {"Location": {
                            "description": "the job (/v1/jobs/{id})", "schema": {"type": "string"}}}},
                        **documented(400, 422), **_TOO_MANY})
def submit_job(body: JobRequest, request: Request, response: Response, principal: RunScope) -> JobOut:
    """Queue a population screen. Jobs run one at a time; follow ``Location`` (or ``links.self``) for progress.

    A wrong parameter is a 400 OperationOutcome whose ``expression`` names it (``study``, ``as_of``, ``source``...).
    One API key may have ``max_jobs_per_key`` jobs queued or running at once: one more is a 429 with Retry-After.
    """
    if body.write_back:
        authorize(request, "writeback")
    settings = request.app.state.settings
    try:
        params = prepare(body.model_dump(), settings)
    except JobParamError as exc:
        raise ServiceError(400, str(exc), expression=[exc.field]) from None
    job = _runner(request).submit(params, owner=principal.name, max_active=settings.max_jobs_per_key)
    if job is None:
        raise _too_many(request)
    out = _out(request, job, counts=False)
    response.headers["Location"] = out.links.self
    return out


@router.get("", response_model=JobList, name="list_jobs", summary="List the jobs", responses=documented(422))
def list_jobs(request: Request, _: ReadScope,
              limit: Annotated[int, Query(ge=1, le=1000, description="at most this many jobs")] = 100) -> JobList:
    """The jobs, newest first (without the counts by status: read one job for those)."""
    return JobList(jobs=[_out(request, j, counts=False) for j in _runner(request).store.list_jobs(limit)])


@router.get("/{job_id}", response_model=JobOut, name="get_job", summary="A job's status and progress",
            responses=documented(404, 422, **_NO_JOB))
def get_job(request: Request, job_id: Annotated[str, JOB_ID], _: ReadScope) -> JobOut:
    """A job's status, progress, results so far by screening status, and error."""
    return _out(request, _job(request, job_id))


@router.get("/{job_id}/results", response_model=ResultsPage, name="job_results", summary="A page of a job's results",
            responses=documented(404, 422, **_NO_JOB))
def job_results(request: Request, job_id: Annotated[str, JOB_ID], _: ReadScope,
                offset: Annotated[int, Query(ge=0, le=2**31, description="skip this many results")] = 0,
                limit: Annotated[int, Query(ge=1, le=1000, description="at most this many results")] = 100,
                ) -> Any:
    """A page of the job's results, in the order the job produced them (each once: a resumed job continues the
    numbering). Readable while the job runs."""
    job = _job(request, job_id)
    results = _runner(request).store.job_results(job_id, offset, limit)
    more = len(results) == limit or job.status not in FINISHED
    base = f"{job_url(request, job_id)}/results"
    # sent as stored (no model in between: a page holds up to 1000 results); ResultsPage documents it
    return JSONResponse({"job": job_id, "status": job.status, "offset": offset, "limit": limit, "results": results,
                         "next": f"{base}?offset={offset + len(results)}&limit={limit}" if more else None})


@router.post("/{job_id}/cancel", response_model=JobOut, status_code=202, name="cancel_job", summary="Cancel a job",
             responses=documented(404, 409, 422, **_NO_JOB))
def cancel_job(request: Request, job_id: Annotated[str, JOB_ID], _: RunScope) -> JobOut:
    """Cancel a job: a queued one at once, a running one between two batches of results (``cancel_requested``
    until then). A finished job cannot be cancelled (409)."""
    job = _job(request, job_id)
    if job.status == "succeeded":
        raise ServiceError(409, "the job has already succeeded", expression=["id"])
    if job.status in ("failed", "interrupted"):
        raise ServiceError(409, f"the job is {job.status}, not running (resume it, or leave it)", expression=["id"])
    return _out(request, _runner(request).cancel(job_id) or job)


@router.post("/{job_id}/resume", response_model=JobOut, status_code=202, name="resume_job",
             summary="Resume a failed, cancelled or interrupted job",
             responses={**documented(404, 409, 422, **_NO_JOB), **_TOO_MANY})
def resume_job(request: Request, job_id: Annotated[str, JOB_ID], principal: RunScope) -> JobOut:
    """Queue a failed, cancelled or interrupted job again: it reads the source again and screens only the
    patients it has no result for, appending to its results. It counts as the resuming key's job
    (``max_jobs_per_key``: 429 beyond it)."""
    job = _job(request, job_id)
    if job.params.get("write_back"):
        authorize(request, "writeback")
    if job.status not in ("queued", "running") and \
            _runner(request).store.active_jobs(principal.name) >= request.app.state.settings.max_jobs_per_key:
        raise _too_many(request)
    try:
        resumed = _runner(request).resume(job_id, owner=principal.name)
    except JobStateError as exc:
        raise ServiceError(409, str(exc), expression=["id"]) from None
    return _out(request, resumed or job)
