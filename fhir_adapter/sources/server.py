"""``ServerSource``: patient records read from a FHIR R4 server with searches, one patient at a time.

Per patient: the Patient, one search per clinical type (``subject=Patient/x`` or ``patient=Patient/x``,
whichever the server declares), and the Medication resources the medication resources point at (read
once per run). A patient whose requests fail part-way (after the client's own retries) gets no record at
all - a half record could make an absent drug look absent - and the run goes on with the next patient; the
patients skipped so are read once more, from the start, at the end of the run (only their ids are kept
until then). Those that fail again are counted as not read (``ReadReport.patient_not_read``: the run is
incomplete). Many patients failing in a row mean the server is down: the run stops with ``SourceError``.

A resource a patient's search returns that fails the shape check (``sources/check.problem``) is skipped and put on
the record as ``Unreadable`` (naming the request), so that no "no such record" conclusion is drawn about its type.

Merged patients (``record/merged.py``): a Patient that ``link``s to another as ``replaced-by`` is read once, under
the Patient that replaced it, with the resources of both. A population run first lists every Patient's links
(``_elements=id,link``: a small answer per Patient) and keeps only the merges, so memory grows with the merged
patients alone; a replaced Patient met in the run is then passed over (read with its survivor). A run of given
patients finds each one's merges from the Patients themselves and, where the server offers it, ``Patient?link=``.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import Any

import requests

from fhir_adapter.client import FhirClient, ResourceNotFound, RetryPolicy, SearchPage
from fhir_adapter.client.throttle import Throttle
from fhir_adapter.errors import FhirError, SourceError
from fhir_adapter.record.assemble import assemble_record, patient_of
from fhir_adapter.record.merged import Merges, links_of, resolve
from fhir_adapter.record.patient_record import PatientRecord, Unreadable
from fhir_adapter.record.references import local_id, parse_reference, reference_of
from fhir_adapter.record.resource_types import rules
from fhir_adapter.sources.base import Source
from fhir_adapter.sources.check import problem
from fhir_adapter.sources.in_order import in_order
from fhir_adapter.sources.report import ReadReport

log = logging.getLogger("fhir_adapter.sources")

MEDICATION_TYPES = ("MedicationStatement", "MedicationRequest", "MedicationAdministration")
SERVER_ERROR = "patient not read: server error"
PATIENT_UNREADABLE = "Patient resource unreadable"
MERGED = "Patient merged into the Patient that replaced it"
NOT_FOLLOWED = "Patient.link not followed"
MAX_MERGED = 50  # Patients in one merge (a chain of charts); more is not one person's history: not followed
ID_CHUNK = 100  # ids per ``Patient?_id=a,b,...`` search
LINKS_PAGE = 1000  # the _count of the pass over every Patient's links (small answers: id and link only)
MAX_CONCURRENCY = 32  # patients read at once, at most (``--concurrency``)
PLANS = ("auto", "searches", "everything")  # how a patient is read (``plan``, $FHIR_ADAPTER_SERVER_PLAN)
PLAN_ENV = "FHIR_ADAPTER_SERVER_PLAN"


@dataclass
class _Plan:
    """The merges of a population run: replaced Patient id -> its survivor, and survivor -> the ids it replaced."""

    into: dict[str, str]
    members: dict[str, list[str]]


@dataclass
class _Outcome:
    """One patient's reading, done in a worker thread and settled in order: ``out`` holds what the source's report
    gets whatever happens; ``reading`` what it gets only with the record (the record's own skips)."""

    out: ReadReport
    record: PatientRecord | None = None
    error: FhirError | None = None
    survivor: str | None = None
    reading: ReadReport | None = None


@dataclass
class _Run:
    """One ``records`` run: patients read, and patients failing one after the other."""

    read: int = 0
    in_a_row: int = 0


class ServerSource(Source):
    """A FHIR R4 server. ``client`` (or ``auth``, ``retry``, ``timeout``, ``strict`` to build one) talks to it.

    ``page_size`` is the ``_count`` of every search. ``max_failures_in_a_row`` patients failing one after
    the other (the server is down, not one bad patient) stop the run with ``SourceError``; None never stops.

    ``concurrency`` patients are read at once (1, the default, to ``MAX_CONCURRENCY``), by threads; their records
    come out in the order of a one-at-a-time run. The requests in flight follow the server (``client/throttle.py``:
    halved on 429 or 503, held back for its Retry-After, grown again one by one). ``plan`` says how a patient is read:
    ``"everything"`` (one ``Patient/x/$everything``), ``"searches"`` (one search per clinical type, the
    medications with ``_include`` where the server declares it), or ``"auto"`` (the default, or
    $FHIR_ADAPTER_SERVER_PLAN): $everything when the CapabilityStatement offers it, else searches.
    """

    def __init__(self, base_url: str, *, client: FhirClient | None = None,
                 auth: requests.auth.AuthBase | None = None, page_size: int = 200,
                 retry: RetryPolicy | None = None, timeout: float | tuple[float, float] = (5, 60),
                 strict: bool = False, max_failures_in_a_row: int | None = 20, medication_cache: int = 10_000,
                 concurrency: int = 1, plan: str | None = None, **options: Any) -> None:
        super().__init__()
        self._own_client = client is None
        self.client = client or FhirClient(base_url, auth=auth, retry=retry, timeout=timeout, strict=strict)
        self.name = self.client.base_url
        self.page_size = page_size
        self.max_failures_in_a_row = max_failures_in_a_row
        self._medications: OrderedDict[str, dict[str, Any] | None] = OrderedDict()
        self._medication_cache = medication_cache
        self._params: dict[str, str | None] = {}  # type -> patient search parameter (see _patient_param)
        self._by_link: bool | None = None  # whether the server offers Patient?link= (see _link_search)
        self._plan: _Plan | None = None  # every merge on the server, once listed (see _merge_plan)
        if not 1 <= concurrency <= MAX_CONCURRENCY:
            raise ValueError(f"concurrency must be 1 to {MAX_CONCURRENCY}, not {concurrency}")
        self.concurrency = concurrency
        self.plan = plan or os.environ.get(PLAN_ENV) or "auto"
        if self.plan not in PLANS:
            raise ValueError(f"plan must be one of {', '.join(PLANS)}, not {self.plan!r}")
        self._everything: bool | None = None  # the plan chosen (see _by_everything)
        self._lock = threading.Lock()  # the medication cache, shared by the reading threads
        self.throttle: Throttle | None = None
        if concurrency > 1:
            self.throttle = self.client.throttle = Throttle(concurrency)
            if self._own_client:  # one kept-alive connection per reading thread
                adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=concurrency)
                self.client.session.mount("http://", adapter)
                self.client.session.mount("https://", adapter)
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

        A patient merged into another (``Patient.link``) gives the record of the Patient that replaced it, with
        the resources of both; each person once. A patient the server fails on is tried once more after all the
        others (a flaky server or a passing outage often answers by then), read again whole, from its Patient."""
        run = _Run()
        plan = self._merge_plan() if patients is None else None
        if self.concurrency > 1:  # one at a time, each is found out when first needed
            self._prepare(patients is None)
        done: set[str] = set()  # survivors already given (a run of given patients: two charts of one person)
        again: list[str] = []  # ids only: a population run never holds records it cannot yield

        def first(item: tuple[str, dict[str, Any] | None, str]) -> _Outcome:
            return self._attempt(*item, plan, done)

        for (pid, _, _), outcome in in_order(self._unreplaced(self._patients(patients, plan), plan), first,
                                            self.concurrency):
            got = self._settle(outcome, done, plan)
            if isinstance(got, FhirError):
                again.append(pid)
                log.warning("Patient/%s not read (%s); it will be tried again at the end of the run", pid, got)
                self._failed(run, got, plan, untried=again)
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

        def second(pid: str) -> _Outcome:
            return self._attempt(pid, None, f"GET {self.name}/Patient/{pid}", plan, done)

        for i, (pid, outcome) in enumerate(in_order(again, second, self.concurrency)):
            got = self._settle(outcome, done, plan)
            if isinstance(got, FhirError):
                self.report.patient_not_read(f"Patient/{pid}", got.request or self.name,
                                             f"{got} (failed twice: in the run and at its end)", kind=SERVER_ERROR,
                                             also=plan.members.get(pid, ()) if plan else ())
                if i + 1 < len(again):  # after the last one, stopping would save nothing
                    self._failed(run, got, plan, untried=again[i + 1:])
            elif got is not None:
                run.read += 1
                run.in_a_row = 0
                yield got
            else:
                run.in_a_row = 0

    def _unreplaced(self, found: Iterator[tuple[str, dict[str, Any] | None, str]], plan: _Plan | None
                    ) -> Iterator[tuple[str, dict[str, Any] | None, str]]:
        """The patients to read: a replaced Patient of a population run is read with its survivor instead."""
        for item in found:
            if plan is not None and item[0] in plan.into:
                log.debug("Patient/%s is replaced by Patient/%s (Patient.link): read with it", item[0],
                          plan.into[item[0]])
                continue
            yield item

    def _prepare(self, population: bool) -> None:
        """What the reading threads share, found out once here: the CapabilityStatement, the plan, each type's
        search parameter and, for a run of given patients, how their merges are found. A server that fails here
        is asked again by each patient's reading (where a failure counts that patient as not read)."""
        try:
            self._by_everything()
            if not self._everything:
                for rtype in rules().clinical:
                    self._patient_param(rtype)
            if not population and not self._link_search():
                self._merge_plan()
        except FhirError as exc:
            log.debug("%s: %s; each patient's reading asks again", self.name, exc)

    def _settle(self, outcome: _Outcome, done: set[str], plan: _Plan | None) -> PatientRecord | FhirError | None:
        """A patient's reading, taken in the run's order: its report merged (its messages logged) and, in a run of
        given patients, a person read already under another chart's id given once."""
        outcome.out.replay_into(self.report)
        if outcome.error is not None:
            return outcome.error
        if outcome.reading is None:
            return None
        if plan is None and outcome.survivor in done:
            log.info("Patient/%s (Patient.link) was read already", outcome.survivor)
            return None
        outcome.reading.replay_into(self.report)
        if outcome.record is not None and plan is None and outcome.survivor is not None:
            done.add(outcome.survivor)
        return outcome.record

    def _attempt(self, pid: str, patient: dict[str, Any] | None, where: str, plan: _Plan | None,
                 done: set[str]) -> _Outcome:
        """The patient's whole record (``_record``; a worker thread may run it); no record when there is nothing
        to read (not on the server, not a valid Patient, already read with another chart); the ``FhirError``
        when the server failed part-way."""
        out = ReadReport(deferred=[])
        try:
            return self._record(pid, patient, where, plan, done, out)
        except ResourceNotFound as exc:
            if patient is None and exc.request.endswith(f"/Patient/{pid}"):
                out.skip(exc.request, f"Patient/{pid} is not on the server", f"Patient/{pid}",
                         kind="patient not found on the server")
                return _Outcome(out)
            return _Outcome(out, error=exc)
        except FhirError as exc:
            return _Outcome(out, error=exc)

    def _failed(self, run: _Run, error: FhirError, plan: _Plan | None, *, untried: list[str]) -> None:
        """One more patient failed in a row. When the server looks down, stop the run: the patients that wait
        to be tried again (``untried``) are counted as not read, and ``SourceError`` says what was done."""
        run.in_a_row += 1
        if self.max_failures_in_a_row is None or run.in_a_row < self.max_failures_in_a_row:
            return
        for pid in untried:
            self.report.patient_not_read(f"Patient/{pid}", self.name, "not tried again: the run stopped",
                                         kind=SERVER_ERROR, also=plan.members.get(pid, ()) if plan else ())
        raise SourceError(
            f"{self.name}: {run.in_a_row} patients in a row could not be read; the server looks down, so the run "
            f"stopped: {run.read} patient{'' if run.read == 1 else 's'} read, {self.report.patients_not_read} not "
            f"read, any others not tried (last error: {error})") from error

    def _patients(self, patients: Collection[str] | None,
                  plan: _Plan | None = None) -> Iterator[tuple[str, dict[str, Any] | None, str]]:
        """``(id, Patient or None to read it, where)``: the given ids, or every Patient, never all in memory. A
        Patient that fails the shape check is a patient the server holds but whose record cannot be had."""
        if patients is not None:
            for pid in patients:
                yield pid, None, f"GET {self.name}/Patient/{pid}"
            return
        try:
            for page in self._pages("Patient", {}):
                for patient in page.resources():
                    if not self._valid(patient, page.where, self.report):
                        self._unreadable_patient(patient, page.where, plan)
                        continue
                    if patient["resourceType"] != "Patient":
                        continue
                    if not isinstance(patient.get("id"), str):
                        self.report.skip(page.where, "Patient without id", kind="Patient without id")
                        continue
                    yield patient["id"], patient, page.where
        except FhirError as exc:
            raise SourceError(f"{self.name}: cannot list the patients: {exc}") from exc

    def _unreadable_patient(self, patient: Any, where: str, plan: _Plan | None = None,
                            out: ReadReport | None = None) -> None:
        """Count a Patient the server holds that fails the shape check: no result for it, nor for the Patients it
        replaced (the run is incomplete), as for a Patient line of a file that cannot be read."""
        if type(patient) is not dict or patient.get("resourceType") != "Patient":
            return  # not a Patient at all: the skip says so
        pid = patient.get("id")
        olds = plan.members.get(pid, []) if plan is not None and isinstance(pid, str) else []
        (out or self.report).patient_not_read(f"Patient/{pid}" if isinstance(pid, str) else None, where,
                                     "its Patient resource could not be read" + (
                                         f" (it replaced {', '.join('Patient/' + o for o in olds)})" if olds else ""),
                                     kind=PATIENT_UNREADABLE, also=olds)

    def _record(self, pid: str, patient: dict[str, Any] | None, where: str, plan: _Plan | None,
                done: set[str], out: ReadReport) -> _Outcome:
        """Read everything of one patient (and of the Patients merged with it), then assemble. What concerns the
        run goes to ``out``; the record's own skips to the outcome's ``reading``, merged only with the record."""
        grouping = ReadReport(deferred=[])
        report = ReadReport(deferred=[])
        if patient is None:
            patient = self.client.read("Patient", pid)
            if not self._valid(patient, where, out):
                self._unreadable_patient(patient, where, plan, out)
                return _Outcome(out)
        if plan is not None:
            survivor, replaced = pid, plan.members.get(pid, [])
        else:
            found_group = self._group(pid, patient, where, grouping, out)
            if found_group is None:
                return _Outcome(out)  # its survivor's Patient cannot be read (counted)
            survivor, patient, where, replaced = found_group
            if survivor in done:
                log.info("Patient/%s is replaced by Patient/%s (Patient.link), read already", pid, survivor)
                grouping.replay_into(out)
                return _Outcome(out)
        found: list[tuple[dict[str, Any], str]] = [(patient, where)]
        unread: list[Unreadable] = []
        medications: set[str] = set()
        included: dict[str, dict[str, Any]] = {}  # Medication/x -> the Medication a search or $everything sent
        for chart in (survivor, *replaced):
            if chart != survivor:
                report.note("Patient.link", f"Patient/{chart} is replaced by Patient/{survivor} "
                            f"(Patient.link): its resources are read as Patient/{survivor}'s", kind=MERGED, quiet=True)
            for rtype, resource, at in self._chart(chart, report, unread, included):
                found.append((resource, at))
                if rtype in MEDICATION_TYPES:
                    target = parse_reference(reference_of(resource.get("medicationReference")) or "")
                    if target and target.startswith("Medication/"):
                        medications.add(target)
        shared = {ref: med for ref in sorted(medications)
                  if (med := included.get(ref) or self._medication(ref, report))}
        record = assemble_record(survivor, found, report, shared=shared, source=self.name, unreadable=unread,
                                 replaced=replaced)
        grouping.replay_into(out)
        return _Outcome(out, record, survivor=survivor, reading=report)

    def _chart(self, pid: str, report: ReadReport, unread: list[Unreadable], included: dict[str, dict[str, Any]]
               ) -> Iterator[tuple[str, dict[str, Any], str]]:
        """``(type, resource, where)`` of every clinical resource of the chart ``pid``, type by type in the order
        of ``rules().clinical``: from ``Patient/pid/$everything`` or from one search per type (``_by_everything``).
        The Medications the answers bring along go to ``included``."""
        if self._by_everything():
            yield from self._everything_of(pid, report, unread, included)
            return
        for rtype in rules().clinical:
            for resource, at in self._patient_resources(rtype, pid, report, unread, included):
                yield rtype, resource, at

    def _everything_of(self, pid: str, report: ReadReport, unread: list[Unreadable],
                       included: dict[str, dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any], str]]:
        """The chart's clinical resources from ``Patient/pid/$everything`` (every page), grouped by type. The
        operation also returns what the patient's compartment reaches through other references (an Observation
        it performed on someone else) and what the resources refer to (Practitioners, Medications): those are
        not the patient's and are passed over; the Medications are kept for the medication references."""
        clinical = rules().clinical
        by_type: dict[str, list[tuple[dict[str, Any], str]]] = {t: [] for t in clinical}
        for page in self._pages(f"Patient/{pid}/$everything", {}):
            for resource in page.resources():
                rtype = resource.get("resourceType") if type(resource) is dict else None
                found = problem(resource)
                if found is not None:
                    if rtype == "Medication" or (isinstance(rtype, str) and rtype in rules().r4_types
                                                 and rtype not in clinical):
                        continue  # not a clinical resource; a Medication that cannot be read is read again
                    kind, reason = found
                    report.skip(page.where, reason, local_id(resource) if isinstance(resource, dict) else None,
                                kind=kind)
                    if _may_belong(resource, pid):
                        types = [rtype] if isinstance(rtype, str) and rtype in clinical else list(clinical)
                        unread.extend(Unreadable(t, page.where, reason) for t in types)
                    continue
                if rtype == "Medication":
                    included[f"Medication/{resource['id']}"] = resource
                elif rtype in by_type and patient_of(resource) == pid:
                    by_type[rtype].append((resource, page.where))
        for rtype, resources in by_type.items():
            for resource, at in resources:
                yield rtype, resource, at

    def _patient_resources(self, rtype: str, pid: str, report: ReadReport, unread: list[Unreadable],
                           included: dict[str, dict[str, Any]] | None = None
                           ) -> Iterator[tuple[dict[str, Any], str]]:
        """The resources of ``rtype`` that belong to ``pid``, searched by the patient when the server can. One
        that fails the shape check is skipped and added to ``unread`` (it may be any record of its type). A
        medication search asks for its Medications too (``_include``) where the server declares it; they go to
        ``included``."""
        param = self._patient_param(rtype)
        if param is None:
            return
        params = {param: f"Patient/{pid}"} if param else {}
        include = f"{rtype}:medication"
        with_meds = included is not None and rtype in MEDICATION_TYPES and param != "" \
            and self.client.capabilities.supports_include(rtype, include)
        if with_meds:
            params["_include"] = include
        for page in self._pages(rtype, params):
            for resource in page.resources():
                if with_meds and type(resource) is dict and resource.get("resourceType") == "Medication":
                    if problem(resource) is None:  # else read on its own, and counted there
                        included[f"Medication/{resource['id']}"] = resource  # type: ignore[index]
                    continue
                found = problem(resource)
                if found is not None:
                    kind, reason = found
                    report.skip(page.where, reason, local_id(resource) if isinstance(resource, dict) else None,
                                kind=kind)
                    if param or _may_belong(resource, pid):
                        unread.append(Unreadable(_type_of(resource, rtype), page.where, reason))
                    continue
                # filters on the client when searching all; also guards against a server that ignored the param
                if patient_of(resource) != pid:
                    if param:
                        report.skip(page.where, f"returned for Patient/{pid} but belongs to another patient",
                                    local_id(resource), kind="search returned another patient's resource")
                    continue
                yield resource, page.where

    # -- merged patients ---------------------------------------------------------------------------------

    def _merge_plan(self) -> _Plan:
        """Every merge on the server (``_find_merges``), once per source; ``SourceError`` when the server fails."""
        if self._plan is None:
            try:
                self._plan = self._find_merges()
            except FhirError as exc:
                raise SourceError(f"{self.name}: cannot list the patients' links: {exc}") from exc
        return self._plan

    def _find_merges(self) -> _Plan:
        """Every merge on the server, from one pass over the Patients' links (``_elements=id,link``: a server that
        ignores ``_elements`` sends whole Patients, read the same way; one that refuses it is asked without).
        Only Patients with links are kept. A replaced Patient whose survivor is not on the server is read on
        its own, and so is every one it replaced (``record/merged.groups``)."""
        edges: list[tuple[str, str]] = []
        linked: set[str] = set()  # Patients with a replaced-by/replaces link: on the server
        try:
            self._links_pass({"_elements": "id,link"}, edges, linked)
        except FhirError as exc:
            if exc.status != 400 or edges or linked:
                raise
            log.info("%s: the server refused _elements (%s); reading the links from whole Patients", self.name, exc)
            self._links_pass({}, edges, linked)
        merges = resolve(edges)
        for pid, why in sorted(merges.problems.items()):
            self.report.note("Patient.link", f"Patient/{pid}: {why}", kind=NOT_FOLLOWED)
        survivors = set(merges.into.values())
        present = survivors & linked | self._on_server(sorted(survivors - linked))
        into: dict[str, str] = {}
        for old, new in sorted(merges.into.items()):
            if new in present:
                into[old] = new
            else:
                self.report.note("Patient.link", f"Patient/{old} is replaced by Patient/{new}, which is not on the "
                                 "server: read on its own", kind=NOT_FOLLOWED)
        if into:
            log.info("%s: %d Patient%s merged into the Patient%s that replaced them (Patient.link)", self.name,
                     len(into), "" if len(into) == 1 else "s", "" if len(into) == 1 else "s")
        return _Plan(into, Merges(into).members())

    def _links_pass(self, params: dict[str, str], edges: list[tuple[str, str]], linked: set[str]) -> None:
        for page in self.client.search_pages("Patient", params, count=max(self.page_size, LINKS_PAGE)):
            for patient in page.resources():
                if type(patient) is not dict or "link" not in patient or problem(patient) is not None:
                    continue  # no links; a Patient that cannot be read is counted in the run itself
                found, problems = links_of(patient)
                for why in problems:
                    self.report.note(page.where, f"Patient/{patient.get('id')}: {why}", kind=NOT_FOLLOWED)
                if found and isinstance(patient.get("id"), str):
                    edges.extend(found)
                    linked.add(patient["id"])

    def _on_server(self, ids: list[str]) -> set[str]:
        """Which of ``ids`` are Patients on the server (``Patient?_id=a,b,...``, ``ID_CHUNK`` at a time)."""
        out: set[str] = set()
        for i in range(0, len(ids), ID_CHUNK):
            chunk = ids[i:i + ID_CHUNK]
            for page in self._pages("Patient", {"_id": ",".join(chunk), "_elements": "id"}):
                out.update(r["id"] for r in page.resources()
                           if type(r) is dict and r.get("resourceType") == "Patient" and r.get("id") in chunk)
        return out

    def _group(self, pid: str, patient: dict[str, Any], where: str, report: ReadReport, out: ReadReport
               ) -> tuple[str, dict[str, Any], str, list[str]] | None:
        """For a patient asked for by id: ``(survivor, its Patient, where, replaced ids)``, found from the links the
        Patients state and, where the server offers it, ``Patient?link=Patient/x`` (links stated only on the other
        Patient; a server without it: the links of every Patient, listed once). None when the survivor's Patient
        cannot be read (counted: no result rather than half of one)."""
        if not self._link_search():
            plan = self._merge_plan()
            survivor = plan.into.get(pid, pid)
            if survivor == pid:
                return pid, patient, where, plan.members.get(pid, [])
            found, at = self._patient_or_none(survivor)
            ok = self._survivor(pid, survivor, found, at, report, out)
            if ok is None:
                return None
            if not ok or found is None:
                return pid, patient, where, []
            return survivor, found, at, plan.members.get(survivor, [])
        known: dict[str, tuple[dict[str, Any] | None, str]] = {pid: (patient, where)}
        edges: list[tuple[str, str]] = []
        searched: set[str] = set()
        by_link = self._link_search()
        todo = [pid]
        while todo:
            n = todo.pop()
            resource, at = known[n]
            if resource is not None and "link" in resource and problem(resource) is None:
                found, problems = links_of(resource)
                for why in problems:
                    report.note(at, f"Patient/{n}: {why}", kind=NOT_FOLLOWED)
                edges.extend(found)
                for m in {x for e in found for x in e} - known.keys():
                    known[m] = self._patient_or_none(m)
                    todo.append(m)
            if by_link and n not in searched:
                searched.add(n)
                for page in self._pages("Patient", {"link": f"Patient/{n}"}):
                    for other in page.resources():
                        oid = other.get("id") if type(other) is dict else None
                        if isinstance(oid, str) and oid not in known and problem(other) is None \
                                and any(n in e for e in links_of(other)[0]):
                            known[oid] = (other, page.where)
                            todo.append(oid)
            if len(known) > MAX_MERGED:
                report.note(where, f"Patient/{pid}: more than {MAX_MERGED} Patients linked as replaced-by/replaces "
                            "with it; the links are not followed", kind=NOT_FOLLOWED)
                return pid, patient, where, []
        if not edges:
            return pid, patient, where, []
        merges = resolve(edges)
        if pid in merges.problems:
            report.note(where, f"Patient/{pid}: {merges.problems[pid]}", kind=NOT_FOLLOWED)
        survivor = merges.into.get(pid, pid)
        if survivor == pid:
            return pid, patient, where, merges.members().get(pid, [])
        resource, at = known[survivor]
        ok = self._survivor(pid, survivor, resource, at, report, out)
        if ok is None:
            return None
        if not ok:
            return pid, patient, where, []
        assert resource is not None
        return survivor, resource, at, merges.members().get(survivor, [])

    def _survivor(self, pid: str, survivor: str, resource: dict[str, Any] | None, where: str,
                  report: ReadReport, out: ReadReport) -> bool | None:
        """Whether ``pid`` is read with the Patient ``survivor`` that replaced it: False when that one is not on the
        server (``pid`` is read on its own), None when it cannot be read (counted: neither gets a result)."""
        if resource is None:
            report.note(where, f"Patient/{pid} is replaced by Patient/{survivor}, which is not on the server: "
                        "read on its own", kind=NOT_FOLLOWED)
            return False
        if problem(resource) is not None:
            self._valid(resource, where, out)
            out.patient_not_read(f"Patient/{survivor}", where, "its Patient resource could not be read "
                                f"(it replaced Patient/{pid})", kind=PATIENT_UNREADABLE, also=[pid])
            return None
        return True

    def _patient_or_none(self, pid: str) -> tuple[dict[str, Any] | None, str]:
        where = f"GET {self.name}/Patient/{pid}"
        try:
            return self.client.read("Patient", pid), where
        except ResourceNotFound:
            return None, where

    def _link_search(self) -> bool:
        """Whether the server offers ``Patient?link=`` (else only the links a Patient states itself are seen)."""
        if self._by_link is None:
            self._by_link = self.client.supports_search("Patient", "link")
            if not self._by_link:
                log.info("%s: the server declares no Patient?link search: the merged patients are found from the "
                         "links of every Patient, listed once", self.name)
        return self._by_link

    def _by_everything(self) -> bool:
        """Whether a chart is read with ``Patient/x/$everything`` (``plan``; "auto": when the server's
        CapabilityStatement offers the operation) rather than with one search per clinical type."""
        if self._everything is None:
            offered = self.client.capabilities.supports_operation("everything")
            self._everything = self.plan == "everything" or (self.plan == "auto" and offered)
            if self.plan == "everything" and not offered:
                log.warning("%s: the server's CapabilityStatement does not offer Patient/$everything; asked for "
                            "anyway", self.name)
            log.info("%s: each patient is read with %s", self.name, "Patient/$everything" if self._everything
                     else "one search per clinical type")
        return self._everything

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
        with self._lock:
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
        with self._lock:
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


def _type_of(resource: Any, searched: str) -> str:
    """The type of a resource that cannot be read: its own when it names an R4 type, else the type searched."""
    rtype = resource.get("resourceType") if type(resource) is dict else None
    return rtype if isinstance(rtype, str) and rtype in rules().r4_types else searched


def _may_belong(resource: Any, pid: str) -> bool:
    """Whether a resource that cannot be read may be ``pid``'s (read from a search of every resource of its type):
    not when its own subject/patient reference is sound and names another patient."""
    if type(resource) is not dict:
        return True
    try:
        owner = patient_of(resource)
    except (TypeError, AttributeError):  # a reference of the wrong type: no patient to tell
        return True
    return owner is None or owner == pid
