"""The process a population screen job runs in: ``python -m fhir_adapter.service.jobs_worker``.

The service's job runner (``jobs.py``) starts one such process per job run, writes the job's spec to its
standard input (one JSON object) and reads events from its standard output, one JSON object a line:

- ``{"total": n}`` when the number of patients is known before the end;
- ``{"patient": id, "result": {...}, "skipped": n, "retries": n}`` per patient, in the source's order
  (``skipped``: the resources skipped with problems and the patients not read whole so far; ``retries``:
  FHIR requests sent again so far; ``write``: the write-back outcome when asked);
- last, ``{"end": "succeeded", ...}`` or ``{"end": "failed", "error": "...", ...}`` with the same counts; a
  succeeded run that could not read some patients whole says so in ``error`` ("incomplete: ...").

A separate process keeps the CPU-bound screening off the service's event loop and GIL, lets file sources
fork their worker processes safely (the service itself is multi-threaded), and can be stopped at once on
cancel. It imports only the engine (no web framework, no database): the runner owns every write to the store.
Messages go to standard error; standard output carries only events.
"""

from __future__ import annotations

import logging
import signal
import sys
import time
import traceback
from collections.abc import Callable, Collection, Iterator
from contextlib import ExitStack
from datetime import date
from typing import IO, Any

import orjson

from fhir_adapter.errors import AdapterError
from fhir_adapter.service.fhir_server import client as fhir_client
from fhir_adapter.service.fhir_server import client_options
from fhir_adapter.sources import Source

log = logging.getLogger("fhir_adapter.service.jobs")
SERVER = "server"  # the spec's source for the configured FHIR server
_retries = 0  # FHIR requests sent again (the runner adds them to the service's metrics)


def log_bug(message: str, exc: BaseException) -> None:
    """Log an unexpected error with its type and where it happened, not its message (it may name a patient)."""
    log.error("%s: %s\n%s", message, type(exc).__name__, "".join(traceback.format_tb(exc.__traceback__)).rstrip())


def _counted_sleep(seconds: float) -> None:
    global _retries
    _retries += 1
    time.sleep(seconds)


class Events:
    """Writes events to the runner, one JSON line each, flushed at once."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out

    def __call__(self, event: dict[str, Any]) -> None:
        self.out.write(orjson.dumps(event) + b"\n")
        self.out.flush()


def open_job_source(spec: dict[str, Any]) -> Source:
    """The source the spec names: the configured server, 'sample', or a file or folder (already vetted)."""
    from fhir_adapter.sources import open_source

    if spec["source"] == SERVER:
        from fhir_adapter.sources.server import ServerSource

        return ServerSource(spec["server"]["base"], **client_options(spec["server"], _counted_sleep))
    return open_source(spec["source"], workers=spec.get("workers") or 1)


def server_total(source: Source) -> int | None:
    """How many Patients the server holds (``_summary=count``), or None when it will not say."""
    client = getattr(source, "client", None)
    if client is None:
        return None
    try:
        page = next(client.search_pages("Patient", {"_summary": "count"}))
    except (AdapterError, StopIteration):
        return None
    total = page.bundle.get("total")
    return total if isinstance(total, int) else None


def server_patient_ids(source: Source, skip: Collection[str], chunk: int = 200) -> Iterator[list[str]]:
    """The ids of the server's Patients not in ``skip``, a page at a time (resuming a server job)."""
    client = source.client  # type: ignore[attr-defined]
    batch: list[str] = []
    for patient in client.search("Patient", {"_elements": "id"}, count=chunk):
        pid = patient.get("id") if isinstance(patient, dict) else None
        if isinstance(pid, str) and pid not in skip:
            batch.append(pid)
            if len(batch) >= chunk:
                yield batch
                batch = []
    if batch:
        yield batch


def results(source: Source, fn: Callable[[Any], Any], spec: dict[str, Any], prefilter: Any = None) -> Iterator[Any]:
    """``fn`` over the spec's patients (all, or ``patients``), without those in ``skip``; ``prefilter``: what a
    file source may leave unparsed (``studies.lookback``)."""
    skip = frozenset(spec.get("skip") or ())
    patients = spec.get("patients")
    if patients is not None:
        wanted = [p for p in dict.fromkeys(patients) if p not in skip]
        if wanted:
            yield from source.map_records(fn, wanted, prefilter=prefilter)
        return
    if skip and spec["source"] == SERVER:
        # read only the patients still to do (a server read is the costly part), a page of ids at a time
        for ids in server_patient_ids(source, skip):
            yield from source.map_records(fn, ids, prefilter=prefilter)
        return
    # a file source is read whole anyway: the patients already done are dropped before screening
    yield from source.map_records(fn, None, prefilter=prefilter)


def run(spec: dict[str, Any], emit: Callable[[dict[str, Any]], None]) -> None:
    """Screen the spec's population, emitting each result; raises what the source or the study raises."""
    from fhir_adapter.studies.definition import load_study
    from fhir_adapter.studies.lookback import prefilter
    from fhir_adapter.studies.screen import out_of_cohort_by, screen
    from fhir_adapter.terminology.catalog import Catalog

    study = load_study(spec["study"])
    if spec.get("settings"):
        study = study.with_settings(spec["settings"])
    catalog = Catalog.load(spec.get("site"))
    as_of = date.fromisoformat(spec["as_of"])
    randomization = date.fromisoformat(spec["randomization"]) if spec.get("randomization") else as_of
    skip = frozenset(spec.get("skip") or ())
    # as ``fhir-adapter screen`` without --full-history: a file source skips, unparsed, the Observations older
    # than every look-back that reads them, and ``screen`` is told so (its horizon)
    lookback = None if spec.get("full_history") else prefilter(study, catalog, as_of)
    horizon = None
    all_criteria = bool(spec.get("all_criteria"))  # default: the entry cohort's short result for those out of it

    def one(record: Any) -> tuple[str, dict[str, Any]] | None:
        if record.patient_id in skip:
            return None
        return record.patient_id, screen(record, study, catalog, as_of, randomization, horizon,
                                         all_criteria=all_criteria)

    with ExitStack() as stack:
        writer = None
        if spec.get("write_back"):
            from fhir_adapter.writeback.write import WriteBack

            client = stack.enter_context(fhir_client(spec["server"], _counted_sleep))
            writer = WriteBack(client)
        source = stack.enter_context(open_job_source(spec))
        if spec.get("patients") is not None:
            emit({"total": len(set(spec["patients"]))})
        elif spec["source"] == SERVER and (total := server_total(source)) is not None:
            emit({"total": total})
        try:
            if lookback is not None and source.prefilters:
                horizon = lookback[1]  # before the source forks its workers: they read it in ``one``
            else:
                lookback = None
            for item in results(source, one, spec, lookback[0] if lookback else None):
                if item is None:
                    continue
                pid, result = item
                event: dict[str, Any] = {"patient": pid, "result": result, "skipped": _skipped(source.report),
                                         "retries": _retries}
                if writer is not None:
                    event["write"] = _write(writer, pid, result, study.id, out_of_cohort_by(result, study) is not None)
                emit(event)
        except (AdapterError, OSError) as exc:  # the source failed part-way: say why and what it skipped until then
            emit({"end": "failed", "error": str(exc) or type(exc).__name__, "skipped": _skipped(source.report),
                  "retries": _retries})
            return
        end: dict[str, Any] = {"end": "succeeded", "skipped": _skipped(source.report), "retries": _retries}
        if source.report.patients_not_read:  # finished, but not every patient got a result: say so
            end["error"] = f"incomplete: {source.report.patients_not_read} patient(s) could not be read whole"
        emit(end)


def _skipped(report: Any) -> int:
    """What a job counts as skipped: resources skipped with problems, and patients not read whole."""
    return int(report.problems + report.patients_not_read)


def _write(writer: Any, pid: str, result: dict[str, Any], study: str, out_of_cohort: bool) -> dict[str, Any]:
    """Write one patient's screening back; the outcome in counts (an error is reported, not raised). A patient
    out of the entry cohort: only what the server already holds is updated (``WriteBack.write`` follow_only)."""
    from fhir_adapter.writeback.build import screening_resources

    outcome = writer.write(pid, screening_resources(result), study, follow_only=out_of_cohort)
    return {"written": len(outcome.written) if not outcome.error else 0, "unchanged": len(outcome.unchanged),
            "conflicts": len(outcome.conflicts), "error": outcome.error}


def _terminated(signum: int, frame: Any) -> None:
    """SIGTERM (cancel, service stop): unwind, so that sources remove their temporary files."""
    raise SystemExit(128 + signum)


def main() -> int:
    signal.signal(signal.SIGTERM, _terminated)
    out = sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but events on the pipe to the runner
    logging.basicConfig(level=logging.WARNING, format="fhir-adapter job: %(levelname)s %(message)s")
    # the engine's messages name resources and requests (and so patients): none reaches the service's log; what
    # was skipped is counted in the job, why the job failed is its error
    logging.getLogger("fhir_adapter").setLevel(logging.CRITICAL)
    log.setLevel(logging.WARNING)
    emit = Events(out)
    try:
        spec = orjson.loads(sys.stdin.buffer.read())
        run(spec, emit)
    except BrokenPipeError:  # the runner is gone (cancelled, or the service stopped)
        return 1
    except (AdapterError, OSError, ValueError) as exc:
        # a source that cannot be read (server down, file gone), a bad study setting: the job fails with why
        emit({"end": "failed", "error": str(exc) or type(exc).__name__})
    except Exception as exc:  # a bug: the job fails with its type; where it happened goes to standard error
        log_bug("job failed", exc)
        emit({"end": "failed", "error": f"internal error ({type(exc).__name__})"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
