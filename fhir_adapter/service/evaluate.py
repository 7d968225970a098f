"""Evaluate one patient now, from the configured FHIR server: screening (``screen``) or response (``Responder``),
the same JSON the command line prints; record it in the feed and optionally write it back.

The FHIR client, the catalog and the studies are built once per service and shared by every request (the
change poller and jobs use the same ``Evaluator``). Errors are raised as ``PatientNotFound`` (404),
``FhirUnavailable`` (503: the server cannot be reached or keeps failing after the client's retries),
``UpstreamError`` (502: the server refused the request) and ``EvaluationError`` (422: e.g. an unknown study).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any, Literal

from fhir_adapter.errors import AdapterError, ConfigError, FhirError, SourceError

if TYPE_CHECKING:
    from fhir_adapter.client import FhirClient
    from fhir_adapter.record.patient_record import PatientRecord
    from fhir_adapter.service.metrics import Metrics
    from fhir_adapter.service.settings import ServiceSettings
    from fhir_adapter.service.store import Store

Kind = Literal["screening", "response"]
FHIR_ID = r"[A-Za-z0-9\-.]{1,64}"  # a FHIR resource id (a Patient's)
TRANSIENT = frozenset({408, 429, 500, 502, 503, 504})


class EvaluationError(AdapterError):
    """The request cannot be evaluated as asked (unknown study, dates out of order); names the field."""

    def __init__(self, message: str, *expression: str):
        super().__init__(message)
        self.expression = expression


class PatientNotFound(AdapterError):
    """The Patient is not on the FHIR server."""


class FhirUnavailable(AdapterError):
    """The FHIR server cannot be reached, or answered 5xx/429 after the client's retries."""


class UpstreamError(AdapterError):
    """The FHIR server refused a request (401/403 or another 4xx): not worth retrying as is."""


@dataclass
class Evaluation:
    """One evaluation: the result (the CLI's JSON), its feed seq (None when nothing changed) and, when the
    result was written back, the write-back outcome."""

    study: str
    kind: Kind
    patient: str
    result: dict[str, Any]
    seq: int | None
    write_back: dict[str, Any] | None = None
    changed: bool = field(init=False)

    def __post_init__(self) -> None:
        self.changed = self.seq is not None


class Evaluator:
    """Evaluates patients for the configured studies; thread-safe (one per service, shared by its threads)."""

    def __init__(self, settings: ServiceSettings, store: Store, metrics: Metrics | None = None,
                 client: FhirClient | None = None):
        self.settings = settings
        self.store = store
        self.metrics = metrics
        self._client = client
        self._lock = threading.Lock()
        self._studies: dict[str, Any] | None = None
        self._responders: dict[str, Any] = {}
        self._ready_at = 0.0
        self._ready = False

    # -- shared, built on first use ---------------------------------------------------------------------

    @property
    def client(self) -> FhirClient:
        """The FHIR client (built on first use: creating the app makes no network request)."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._make_client()
        return self._client

    def _make_client(self, attempts: int | None = None, read_timeout: float | None = None) -> FhirClient:
        from fhir_adapter.service.fhir_server import client, server_block

        if not self.settings.fhir_base:
            raise FhirUnavailable("no FHIR server is configured (setting fhir_base / FHIR_ADAPTER_FHIR_BASE)")
        block = server_block(self.settings)
        if attempts:
            block["retry"]["max_attempts"] = attempts
        if read_timeout:
            block["timeout"][1] = read_timeout
        return client(block, self.metrics.retry_sleep() if self.metrics else None)

    @property
    def catalog(self) -> Any:
        from fhir_adapter.terminology.catalog import Catalog

        return Catalog.load(self.settings.site)  # cached per site file

    def studies(self) -> dict[str, Any]:
        """Every name (id and alias, lower case) of the configured studies -> the Study."""
        if self._studies is None:
            from fhir_adapter.studies.definition import load_study

            names: dict[str, Any] = {}
            for sid in self.settings.studies:
                study = load_study(sid)
                for name in (study.id, *study.aliases):
                    names[name.lower()] = study
            self._studies = names
        return self._studies

    def study(self, name: str) -> Any:
        """The configured study ``name`` (an id or alias, never a file path)."""
        study = self.studies().get(name.strip().lower())
        if study is None:
            known = ", ".join(sorted({s.id for s in self.studies().values()}))
            raise EvaluationError(f"unknown study (configured: {known})", "study")
        return study

    def _responder(self, study_id: str, baseline: date | None, at: date | None) -> Any:
        from fhir_adapter.response.respond import Responder
        from fhir_adapter.response.settings import load_settings
        from fhir_adapter.response.tis import load_rules

        key = study_id
        if baseline is None and at is None and key in self._responders:
            return self._responders[key]
        settings = load_settings()
        try:
            study = settings.study(study_id)
        except ConfigError:
            raise EvaluationError(f"study {study_id} has no response assessment", "study") from None
        responder = Responder(study, settings, load_rules(), self.catalog, baseline=baseline, at=at)
        if baseline is None and at is None:
            self._responders[key] = responder
        return responder

    # -- reading and evaluating -------------------------------------------------------------------------

    def record(self, patient: str) -> PatientRecord:
        """The patient's record from the FHIR server."""
        from fhir_adapter.client import AuthError
        from fhir_adapter.sources.server import ServerSource

        source = ServerSource(self.client.base_url, client=self.client, max_failures_in_a_row=1)
        try:
            records = list(source.records([patient]))
        except SourceError as e:
            cause = e.__cause__
            if isinstance(cause, AuthError):
                raise UpstreamError("the FHIR server refused the adapter's credentials "
                                    f"(HTTP {cause.status})") from None
            if isinstance(cause, FhirError) and cause.status is not None and cause.status not in TRANSIENT:
                raise UpstreamError(f"the FHIR server answered HTTP {cause.status}") from None
            status = f"HTTP {cause.status}" if isinstance(cause, FhirError) and cause.status else "no connection"
            raise FhirUnavailable(f"the FHIR server is unavailable ({status}); try again later") from None
        if not records:
            raise PatientNotFound("no such Patient on the FHIR server")
        return records[0]

    def evaluate(self, study: str, kind: Kind, patient: str, *, as_of: date | None = None,
                 randomization: date | None = None, baseline: date | None = None, at: date | None = None,
                 record: PatientRecord | None = None, all_criteria: bool = False) -> dict[str, Any]:
        """The result the CLI would print for this patient (``screen`` or ``response`` with ``--patient``;
        ``all_criteria`` as ``--all-criteria``)."""
        st = self.study(study)
        if kind == "screening":
            from fhir_adapter.studies.screen import screen

            day = as_of or self.settings.today()
            if randomization is not None and randomization < day:
                raise EvaluationError("randomization is before as_of (randomization follows screening)",
                                      "randomization")
            rec = record if record is not None else self.record(patient)
            return screen(rec, st, self.catalog, day, randomization or day, all_criteria=all_criteria)
        if kind == "response":
            responder = self._responder(st.id, baseline, at)
            rec = record if record is not None else self.record(patient)
            return responder(rec)
        raise EvaluationError(f"unknown kind {kind!r}: screening or response", "kind")

    def evaluate_and_record(self, study: str, kind: Kind, patient: str, origin: str = "evaluate", *,
                            as_of: date | None = None, randomization: date | None = None,
                            baseline: date | None = None, at: date | None = None, write_back: bool | None = None,
                            only_on_drug: bool | None = None, record: PatientRecord | None = None,
                            all_criteria: bool = False) -> Evaluation | None:
        """Evaluate, append to the feed (only a change appends), and write back when asked (``write_back``
        None: the ``write_back`` setting). ``only_on_drug`` (default: for every origin but "evaluate") skips
        a response assessment of a patient never on the study drug and returns None, as the CLI does when it
        scores every patient. A Patient merged into another (``Patient.link``) is evaluated, recorded and written
        back as the Patient that replaced it."""
        st = self.study(study)
        try:
            rec = record if record is not None else self.record(patient)
            patient = rec.patient_id  # a Patient merged into another (Patient.link): the record is the survivor's
            if kind == "response" and (origin != "evaluate" if only_on_drug is None else only_on_drug) and \
                    not self._responder(st.id, baseline, at).on_study_drug(rec):
                return None
            result = self.evaluate(st.id, kind, patient, as_of=as_of, randomization=randomization,
                                   baseline=baseline, at=at, record=rec, all_criteria=all_criteria)
        except (PatientNotFound, FhirUnavailable, UpstreamError, EvaluationError) as e:
            self._count(st.id, kind, _error_kind(e), origin)
            raise
        status = result.get("status") if kind == "screening" else result.get("category")
        self._count(st.id, kind, str(status or "unknown"), origin)
        seq = self.store.append_result(st.id, kind, _pid(patient), result, origin)
        if seq is not None and self.metrics:
            self.metrics.feed_appends.labels(st.id, kind, origin.split(":")[0]).inc()
        written = None
        if write_back if write_back is not None else self.settings.write_back:
            written = self.write(st.id, kind, patient, result)
        return Evaluation(st.id, kind, _pid(patient), result, seq, written)

    def reevaluate(self, patient: str, origin: str) -> list[Evaluation]:
        """Every configured study x ``poll_kinds`` for one patient, reading its record once (the change
        poller's call). A patient no longer on the server gives an empty list."""
        try:
            rec = self.record(patient)
        except PatientNotFound:
            return []
        out = []
        for sid in dict.fromkeys(s.id for s in self.studies().values()):
            for kind in self.settings.poll_kinds:
                ev = self.evaluate_and_record(sid, kind, patient, origin, record=rec)
                if ev is not None:
                    out.append(ev)
        return out

    def write(self, study: str, kind: Kind, patient: str, result: dict[str, Any]) -> dict[str, Any]:
        """Write ``result`` to the FHIR server (issue 6's write-back); the outcome as a dict."""
        from fhir_adapter.studies.screen import out_of_cohort_by
        from fhir_adapter.writeback.build import response_observations, screening_resources
        from fhir_adapter.writeback.write import WriteBack

        resources = screening_resources(result) if kind == "screening" else response_observations(result)
        # a patient out of the entry cohort: nothing new to follow, only what the server holds is updated
        follow_only = kind == "screening" and out_of_cohort_by(result, self.study(study)) is not None
        outcome = WriteBack(self.client).write(_pid(patient), resources, study, follow_only=follow_only)
        if outcome.error and self.metrics:
            self.metrics.errors.labels("writeback").inc()
        return outcome.as_dict()

    # -- health -------------------------------------------------------------------------------------------

    def fhir_ready(self, max_age: float = 2.0) -> bool:
        """Whether the FHIR server answers ``GET /metadata`` (one attempt, short timeout; cached ``max_age`` s
        so that frequent probes cost nothing)."""
        now = time.monotonic()
        if now - self._ready_at < max_age:
            return self._ready
        try:
            client = self._make_client(attempts=1, read_timeout=5)
            try:
                client.get_resource(f"{client.base_url}/metadata", "CapabilityStatement")  # not a gateway's page
            finally:
                client.close()
            ready = True
        except (AdapterError, OSError):
            ready = False
        self._ready, self._ready_at = ready, now
        return ready

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def _count(self, study: str, kind: str, status: str, origin: str) -> None:
        if self.metrics:
            self.metrics.evaluations.labels(study, kind, status, origin.split(":")[0]).inc()
            if status in ("fhir-unavailable", "fhir-refused"):
                self.metrics.errors.labels(status).inc()


def _pid(patient: str) -> str:
    return patient.removeprefix("Patient/")


def _error_kind(e: Exception) -> str:
    return {PatientNotFound: "patient-not-found", FhirUnavailable: "fhir-unavailable",
            UpstreamError: "fhir-refused"}.get(type(e), "invalid-request")
