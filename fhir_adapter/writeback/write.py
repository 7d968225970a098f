"""Write-back to a FHIR server (issue 6): one transaction Bundle per patient, all or nothing.

Each resource is matched by its identifier. Before writing, the current version is read: when its meaningful
content (everything but ``id``, ``meta`` and ``text``) is unchanged nothing is written, so a new version always
means a new result. A ResearchSubject whose status a person set (anything but potential-candidate, candidate,
ineligible) is never overwritten: it is reported as a conflict. A resource that exists is updated by id with
``ifMatch`` on the version read, so a change made between the read and the write (a coordinator enrolling the
patient) fails the transaction with 412 instead of being overwritten; the patient is then read and planned
again, once. A new one is created by conditional ``PUT Type?identifier=system|value``, which concurrent runs
cannot duplicate. Every resource is checked by ``validate.check`` first; one that fails stops that patient's
Bundle.

A patient out of the entry cohort (``follow_only``) has nothing to follow: nothing is created for them. When the
server already holds their screening resources (written while they were in the cohort), those are updated to
the new result (and a missing one of the set is written beside them), so nothing is left stale.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fhir_adapter.client import FhirClient, PreconditionFailed
from fhir_adapter.errors import AdapterError
from fhir_adapter.identity import ADAPTER_TAG
from fhir_adapter.writeback.build import provenance
from fhir_adapter.writeback.profiles import adapter_statuses, research_study
from fhir_adapter.writeback.validate import check

Resource = dict[str, Any]
log = logging.getLogger("fhir_adapter.writeback")


@dataclass
class PatientOutcome:
    """What happened to one patient's results: identifiers written, left unchanged, and conflicts or an error."""

    patient: str
    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    error: str | None = None
    bundle: Resource | None = None
    not_followed: bool = False  # follow_only, and the server holds nothing of this patient's: nothing written

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"patient": self.patient, "written": self.written, "unchanged": self.unchanged}
        if self.not_followed:
            out["not_followed"] = True
        if self.conflicts:
            out["conflicts"] = self.conflicts
        if self.error:
            out["error"] = self.error
        return out


def meaningful(resource: Resource) -> Resource:
    """The content that makes a new version worth writing: all but ``id``, ``meta`` and ``text``."""
    return {k: v for k, v in resource.items() if k not in ("id", "meta", "text")}


def _query(resource: Resource) -> str:
    ident = resource["identifier"][0]
    return f"identifier={ident['system']}|{ident['value']}"


def _key(resource: Resource) -> str:
    return f"{resource['resourceType']}?{_query(resource)}"


def study_resource(study: str) -> Resource:
    """The ResearchStudy of ``study`` from ``profiles/``, tagged as the adapter's."""
    rs = research_study(study)
    rs.pop("id", None)
    return {"resourceType": "ResearchStudy", "meta": {"tag": [dict(ADAPTER_TAG)]},
            **{k: v for k, v in rs.items() if k != "resourceType"}}


class WriteBack:
    """Writes results to ``client``'s server. ``dry_run``: read and compare, build the Bundle, send nothing."""

    def __init__(self, client: FhirClient, *, dry_run: bool = False) -> None:
        self.client = client
        self.dry_run = dry_run
        self._studies_done: set[str] = set()

    def current(self, resource: Resource) -> Resource | None:
        """The stored resource with ``resource``'s identifier, None when there is none."""
        rtype = resource["resourceType"]
        found = [r for r in self.client.search(rtype, _query(resource)) if r.get("resourceType") == rtype]
        if len(found) > 1:
            raise AdapterError(f"{len(found)} {rtype} resources share the identifier of {_key(resource)}")
        return found[0] if found else None

    def plan(self, patient: str, resources: list[Resource], study: str,
             recorded: datetime | None = None, *, follow_only: bool = False) -> PatientOutcome:
        """Validate and compare ``resources`` (one patient's): the outcome, with the Bundle to send (None when
        nothing changed or a resource failed validation). ``follow_only``: nothing is written unless the server
        already holds one of ``resources`` (a patient out of the entry cohort)."""
        outcome = PatientOutcome(patient)
        try:
            for resource in resources:
                check(resource)
        except AdapterError as exc:
            outcome.error = str(exc)
            return outcome
        read: dict[int, Resource | None] = {}
        if follow_only:
            read = {id(r): self.current(r) for r in resources}
            if all(c is None for c in read.values()):
                outcome.not_followed = True
                return outcome
        wanted = list(resources)
        if study not in self._studies_done:
            wanted.insert(0, study_resource(study))
        entries: list[Resource] = []
        sources: list[str] = [f"Patient/{patient}"]
        for resource in wanted:
            key = _key(resource)
            current = read[id(resource)] if id(resource) in read else self.current(resource)
            if current is not None:
                status = current.get("status")
                if resource["resourceType"] == "ResearchSubject" and status not in adapter_statuses():
                    outcome.conflicts.append(f"{key}: status {status!r} was set by a person; the adapter's "
                                             f"{resource['status']!r} is not written")
                    continue
                if meaningful(current) == meaningful(resource):
                    outcome.unchanged.append(key)
                    continue
            entries.append(self._entry(resource, key, current))
            outcome.written.append(key)
            sources.extend(d["reference"] for d in resource.get("derivedFrom") or ())
        if entries:
            # a create's urn:uuid the server rewrites to the new id; an update's own relative reference
            targets = [e["fullUrl"] if e["fullUrl"].startswith("urn:") else e["request"]["url"] for e in entries]
            prov = provenance(targets, sources, study, recorded)
            check(prov)
            entries.append({"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": prov,
                            "request": {"method": "POST", "url": "Provenance"}})
            outcome.bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
        return outcome

    def _entry(self, resource: Resource, key: str, current: Resource | None) -> Resource:
        """A create by identifier, or an update by id of the version ``current`` was read at."""
        if current is None:
            return {"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": resource,
                    "request": {"method": "PUT", "url": key}}
        rtype, rid = resource["resourceType"], current["id"]
        request = {"method": "PUT", "url": f"{rtype}/{rid}"}
        version = (current.get("meta") or {}).get("versionId")
        if version:
            request["ifMatch"] = f'W/"{version}"'
        return {"fullUrl": f"{self.client.base_url}/{rtype}/{rid}", "resource": {**resource, "id": rid},
                "request": request}

    def write(self, patient: str, resources: list[Resource], study: str,
              recorded: datetime | None = None, *, follow_only: bool = False) -> PatientOutcome:
        """Plan, then send the patient's Bundle as one transaction (unless ``dry_run``). A resource changed on
        the server since it was read (412) makes the patient planned and sent again, once. A server error is
        the outcome's ``error``: nothing of that patient was written. ``follow_only``: as ``plan``."""
        for attempt in (1, 2):
            try:
                outcome = self.plan(patient, resources, study, recorded, follow_only=follow_only)
            except AdapterError as exc:
                return PatientOutcome(patient, error=str(exc))
            if outcome.bundle is None or self.dry_run:
                break
            try:
                self.client.transaction(outcome.bundle)
                break
            except PreconditionFailed as exc:
                if attempt == 1:
                    log.info("%s: a resource changed on the server while it was written; reading it again", patient)
                    continue
                return self._failed(outcome, exc)
            except AdapterError as exc:
                return self._failed(outcome, exc)
        if outcome.error is None and not outcome.not_followed and not self.dry_run:
            self._studies_done.add(study)
        return outcome

    @staticmethod
    def _failed(outcome: PatientOutcome, exc: AdapterError) -> PatientOutcome:
        outcome.error = str(exc)
        outcome.written = []
        return outcome
