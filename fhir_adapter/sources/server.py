"""``ServerSource``: patient records read from a FHIR R4 server with searches, one patient at a time.

Per patient: the Patient, one search per clinical type (``subject=Patient/x`` or ``patient=Patient/x``,
whichever the server declares), and the Medication resources the medication resources point at (read
once per run). A patient whose requests fail part-way (after the client's own retries) gets no record at
all - a half record could make an absent drug look absent - and the run goes on with the next patient; the
patients skipped so are read once more, from the start, at the end of the run (only their ids are kept
until then). Those that fail again are counted as not read (``ReadReport.patient_not_read``: the run is
incomplete). Many patients failing in a row mean the server is down: the run stops with ``SourceError``.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import Any

import requests

from fhir_adapter.client import FhirClient, ResourceNotFound, RetryPolicy, SearchPage
from fhir_adapter.errors import FhirError, SourceError
from fhir_adapter.record.assemble import assemble_record, patient_of
from fhir_adapter.record.patient_record import PatientRecord
from fhir_adapter.record.references import local_id, parse_reference, reference_of
from fhir_adapter.record.resource_types import rules
from fhir_adapter.sources.base import Source
from fhir_adapter.sources.check import problem
from fhir_adapter.sources.report import ReadReport

log = logging.getLogger("fhir_adapter.sources")

MEDICATION_TYPES = ("MedicationStatement", "MedicationRequest", "MedicationAdministration")
SERVER_ERROR = "patient not read: server error"


@dataclass
class _Run:
    """One ``records`` run: patients read, and patients failing one after the other."""

    read: int = 0
    in_a_row: int = 0


class ServerSource(Source):
    """A FHIR R4 server. ``client`` (or ``auth``, ``retry``, ``timeout``, ``strict`` to build one) talks to it.

    ``page_size`` is the ``_count`` of every search. ``max_failures_in_a_row`` patients failing one after
    the other (the server is down, not one bad patient) stop the run with ``SourceError``; None never stops.
    """

    def __init__(self, base_url: str, *, client: FhirClient | None = None,
                 auth: requests.auth.AuthBase | None = None, page_size: int = 200,
                 retry: RetryPolicy | None = None, timeout: float | tuple[float, float] = (5, 60),
                 strict: bool = False, max_failures_in_a_row: int | None = 20, medication_cache: int = 10_000,
                 **options: Any) -> None:
        super().__init__()
        self._own_client = client is None
        self.client = client or FhirClient(base_url, auth=auth, retry=retry, timeout=timeout, strict=strict)
        self.name = self.client.base_url
        self.page_size = page_size
        self.max_failures_in_a_row = max_failures_in_a_row
        self._medications: OrderedDict[str, dict[str, Any] | None] = OrderedDict()
        self._medication_cache = medication_cache
        self._params: dict[str, str | None] = {}  # type -> patient search parameter (see _patient_param)
        if options:
            log.debug("%s: options not used by a server source: %s", self.name, ", ".join(sorted(options)))

    def close(self) -> None:
        if self._own_client:
            self.client.close()

    # -- resources ---------------------------------------------------------------------------------------

    def resources(self, types: Collection[str] | None = None) -> Iterator[tuple[dict[str, Any], str]]:
        """Every resource of ``types`` (default: Patient, the clinical types and Medication), type by type."""
        wanted = list(types) if types is not None else ["Patient", *rules().clinical, *sorted(rules().shared)]
        for rtype in wanted:
            for page in self._pages(rtype, {}):
                for resource in page.resources():
                    if self._valid(resource, page.where, self.report):
                        yield resource, page.where

    # -- records -----------------------------------------------------------------------------------------

    def records(self, patients: Collection[str] | None = None) -> Iterator[PatientRecord]:
        """One record per patient: ``patients`` by id, or every Patient on the server, page by page.

        A patient the server fails on is tried once more after all the others (a flaky server or a passing
        outage often answers by then), read again whole, from its Patient."""
        run = _Run()
        again: list[str] = []  # ids only: a population run never holds records it cannot yield
        for pid, patient, where in self._patients(patients):
            got = self._attempt(pid, patient, where)
            if isinstance(got, FhirError):
                again.append(pid)
                log.warning("Patient/%s not read (%s); it will be tried again at the end of the run", pid, got)
                self._failed(run, got, untried=again)
            elif got is not None:
                run.read += 1
                run.in_a_row = 0
                yield got
            else:
                run.in_a_row = 0
        if again:
            log.info("%s: reading again the %d patient%s the server failed on", self.name, len(again),
                     "" if len(again) == 1 else "s")
        run.in_a_row = 0
        for i, pid in enumerate(again):
            got = self._attempt(pid, None, f"GET {self.name}/Patient/{pid}")
            if isinstance(got, FhirError):
                self.report.patient_not_read(f"Patient/{pid}", got.request or self.name,
                                             f"{got} (failed twice: in the run and at its end)", kind=SERVER_ERROR)
                if i + 1 < len(again):  # after the last one, stopping would save nothing
                    self._failed(run, got, untried=again[i + 1:])
            elif got is not None:
                run.read += 1
                run.in_a_row = 0
                yield got
            else:
                run.in_a_row = 0

    def _attempt(self, pid: str, patient: dict[str, Any] | None, where: str) -> PatientRecord | FhirError | None:
        """The patient's whole record; None when there is nothing to read (not on the server, not a valid
        Patient: counted as skipped); the ``FhirError`` when the server failed part-way."""
        try:
            return self._record(pid, patient, where)
        except ResourceNotFound as exc:
            if patient is None and exc.request.endswith(f"/Patient/{pid}"):
                self.report.skip(exc.request, f"Patient/{pid} is not on the server", f"Patient/{pid}",
                                 kind="patient not found on the server")
                return None
            return exc
        except FhirError as exc:
            return exc

    def _failed(self, run: _Run, error: FhirError, *, untried: list[str]) -> None:
        """One more patient failed in a row. When the server looks down, stop the run: the patients that wait
        to be tried again (``untried``) are counted as not read, and ``SourceError`` says what was done."""
        run.in_a_row += 1
        if self.max_failures_in_a_row is None or run.in_a_row < self.max_failures_in_a_row:
            return
        for pid in untried:
            self.report.patient_not_read(f"Patient/{pid}", self.name, "not tried again: the run stopped",
                                         kind=SERVER_ERROR)
        raise SourceError(
            f"{self.name}: {run.in_a_row} patients in a row could not be read; the server looks down, so the run "
            f"stopped: {run.read} patient{'' if run.read == 1 else 's'} read, {self.report.patients_not_read} not "
            f"read, any others not tried (last error: {error})") from error

    def _patients(self, patients: Collection[str] | None) -> Iterator[tuple[str, dict[str, Any] | None, str]]:
        """``(id, Patient or None to read it, where)``: the given ids, or every Patient, never all in memory."""
        if patients is not None:
            for pid in patients:
                yield pid, None, f"GET {self.name}/Patient/{pid}"
            return
        try:
            for page in self._pages("Patient", {}):
                for patient in page.resources():
                    if not self._valid(patient, page.where, self.report) or patient["resourceType"] != "Patient":
                        continue
                    if not isinstance(patient.get("id"), str):
                        self.report.skip(page.where, "Patient without id", kind="Patient without id")
                        continue
                    yield patient["id"], patient, page.where
        except FhirError as exc:
            raise SourceError(f"{self.name}: cannot list the patients: {exc}") from exc

    def _record(self, pid: str, patient: dict[str, Any] | None, where: str) -> PatientRecord | None:
        """Read everything of one patient, then assemble. Its skips reach ``self.report`` only on success."""
        report = ReadReport()
        if patient is None:
            patient = self.client.read("Patient", pid)
            if not self._valid(patient, where, self.report):
                return None
        found: list[tuple[dict[str, Any], str]] = [(patient, where)]
        medications: set[str] = set()
        for rtype in rules().clinical:
            for resource, at in self._patient_resources(rtype, pid, report):
                found.append((resource, at))
                if rtype in MEDICATION_TYPES:
                    target = parse_reference(reference_of(resource.get("medicationReference")) or "")
                    if target and target.startswith("Medication/"):
                        medications.add(target)
        shared = {ref: med for ref in sorted(medications) if (med := self._medication(ref, report))}
        record = assemble_record(pid, found, report, shared=shared, source=self.name)
        self.report.merge(report)
        return record

    def _patient_resources(self, rtype: str, pid: str,
                           report: ReadReport) -> Iterator[tuple[dict[str, Any], str]]:
        """The resources of ``rtype`` that belong to ``pid``, searched by the patient when the server can."""
        param = self._patient_param(rtype)
        if param is None:
            return
        for page in self._pages(rtype, {param: f"Patient/{pid}"} if param else {}):
            for resource in page.resources():
                if not self._valid(resource, page.where, report):
                    continue
                # filters on the client when searching all; also guards against a server that ignored the param
                if patient_of(resource) != pid:
                    if param:
                        report.skip(page.where, f"returned for Patient/{pid} but belongs to another patient",
                                    local_id(resource), kind="search returned another patient's resource")
                    continue
                yield resource, page.where

    def _patient_param(self, rtype: str) -> str | None:
        """The parameter to search ``rtype`` by patient; "" to read every one and keep the patient's on the
        client (the server declares neither ``patient`` nor ``subject``); None when the server has no ``rtype``."""
        if rtype not in self._params:
            fields = rules().clinical[rtype]
            candidates = ["patient"] if "patient" in fields else [*fields, "patient"]
            param = self.client.first_supported(rtype, candidates)
            if not self.client.capabilities.supports_type(rtype):
                log.info("%s: the server offers no %s; none will be read", self.name, rtype)
            elif param is None:
                log.warning("%s: the server declares no %s search for %s; reading every %s and keeping the "
                            "patient's on the client (slow)", self.name, " or ".join(candidates), rtype, rtype)
                param = ""
            self._params[rtype] = param
        return self._params[rtype]

    def _medication(self, ref: str, report: ReadReport) -> dict[str, Any] | None:
        """``Medication/x``, read once per run (a small LRU: formularies are shared by many patients)."""
        if ref in self._medications:
            self._medications.move_to_end(ref)
            return self._medications[ref]
        mid = ref.split("/", 1)[1]
        where = f"GET {self.name}/{ref}"
        try:
            med: dict[str, Any] | None = self.client.read("Medication", mid)
        except ResourceNotFound:
            report.skip(where, "referenced Medication is not on the server", ref, kind="Medication not found")
            med = None
        if med is not None and not self._valid(med, where, report):
            med = None
        self._medications[ref] = med
        if len(self._medications) > self._medication_cache:
            self._medications.popitem(last=False)
        return med

    def _pages(self, rtype: str, params: dict[str, str]) -> Iterator[SearchPage]:
        return self.client.search_pages(rtype, params, count=self.page_size)

    @staticmethod
    def _valid(resource: Any, where: str, report: ReadReport) -> bool:
        found = problem(resource)
        if found is None:
            return True
        kind, reason = found
        report.skip(where, reason, local_id(resource) if isinstance(resource, dict) else None, kind=kind)
        return False
