"""``PatientRecord``: one patient's Patient resource and clinical resources, as plain dicts.

The hot path works on dicts parsed by orjson (about 4 us a resource); fhir.resources models (about 240 us)
are built only where a full model is worth it, never per resource in a population run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fhir_adapter.record.references import local_id, parse_reference, reference_of


@dataclass(frozen=True, slots=True)
class SetAside:
    """A resource kept out of the evidence because its status says it is not data."""

    reference: str  # "Observation/abc"
    reason: str  # "status entered-in-error"


@dataclass(frozen=True, slots=True)
class Unreadable:
    """Something of this patient's that the source holds but could not read (a malformed line, a resource of the
    wrong shape). It is not evidence, and it forbids concluding "no such record" about its resource type."""

    resource_type: str | None  # None: the type could not be read either (forbids every absence conclusion)
    where: str  # "Observation.ndjson line 12", "bundle.json entry 7"
    reason: str

    def shown(self) -> str:
        return f"{self.where}: {self.reason}"


@dataclass(slots=True)
class PatientRecord:
    """Everything a source holds for one patient that a criterion or response measure may use.

    ``resources`` maps a resource type to its usable resources (statuses that mean "not data" are in
    ``set_aside`` instead). ``shared`` holds resources referenced from them that belong to no patient
    (Medication), by ``Type/id``; ``aliases`` maps the ``urn:uuid`` and absolute fullUrls of a bundle to
    ``Type/id``. ``unreadable`` lists what belongs to the patient but could not be read. ``merged`` names the
    Patients this one replaced (``Patient.link``), whose resources are read as its own (``record/merged.py``).
    """

    patient_id: str
    patient: dict[str, Any]
    resources: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    set_aside: list[SetAside] = field(default_factory=list)
    unreadable: list[Unreadable] = field(default_factory=list)
    merged: list[str] = field(default_factory=list)
    shared: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    aliases: Mapping[str, str] = field(default_factory=dict)
    source: str = ""
    _index: dict[str, dict[str, Any]] | None = field(default=None, repr=False)

    @property
    def reference(self) -> str:
        return f"Patient/{self.patient_id}"

    def of(self, resource_type: str) -> list[dict[str, Any]]:
        """The usable resources of one type (an empty list when there are none)."""
        return self.resources.get(resource_type, [])

    def holds(self, resource_type: str) -> bool:
        """Whether the source holds any usable record of this type for the patient.

        A drug or diagnosis missing from the records counts as absent only when this is true (issue 4 item 3).
        """
        return bool(self.resources.get(resource_type))

    def unread(self, resource_types: tuple[str, ...] | list[str]) -> list[Unreadable]:
        """What could not be read that may be of one of these types (an unknown type may be any)."""
        if not self.unreadable:  # nearly every record
            return []
        return [u for u in self.unreadable if u.resource_type is None or u.resource_type in resource_types]

    def can_read(self, resource_type: str) -> bool:
        """Whether the record was given the resources of this type (a ``PartialRecord`` holds only some)."""
        return True

    def count(self) -> int:
        return sum(len(v) for v in self.resources.values())

    def get(self, type_and_id: str) -> dict[str, Any] | None:
        """The resource ``Type/id`` of this record (its own, or a shared one)."""
        if self._index is None:
            index: dict[str, dict[str, Any]] = {self.reference: self.patient}
            for resources in self.resources.values():
                for r in resources:
                    index[local_id(r)] = r
            self._index = index
        return self._index.get(type_and_id) or self.shared.get(type_and_id)

    def resolve(self, reference: Any, within: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """The resource a Reference (or reference string) points at, or None when it is not in the source.

        ``within`` is the resource holding the reference; ``#id`` resolves among its ``contained``.
        """
        ref = reference if isinstance(reference, str) else reference_of(reference)
        if not ref:
            return None
        if ref.startswith("#"):
            for c in (within or {}).get("contained") or ():
                if isinstance(c, dict) and c.get("id") == ref[1:]:
                    return c
            return None
        target = parse_reference(ref, self.aliases)
        return self.get(target) if target else None

    def summary(self) -> dict[str, Any]:
        """Counts per type, for people and logs (no clinical values)."""
        out: dict[str, Any] = {"patient": self.reference}
        out["resources"] = {t: len(v) for t, v in sorted(self.resources.items()) if v}
        if self.set_aside:
            reasons: dict[str, int] = {}
            for s in self.set_aside:
                key = f"{s.reference.split('/')[0]} {s.reason}"
                reasons[key] = reasons.get(key, 0) + 1
            out["set_aside"] = reasons
        if self.unreadable:
            out["unreadable"] = [u.shown() for u in self.unreadable]
        if self.merged:
            out["merged"] = list(self.merged)
        return out


class IncompleteRecord(BaseException):
    """A ``PartialRecord`` was asked for a resource type it was not given.

    A BaseException on purpose: no ``except Exception`` on the way (a rule's guard against malformed data, which
    would turn the error into an answer) may catch it. Whoever built the partial record catches it and reads the
    whole record instead, so a decision taken on a partial record never rests on a type it did not hold.
    """


@dataclass(slots=True)
class PartialRecord(PatientRecord):
    """A record of some resource types only (``loaded``; the Patient always), for a decision that reads only those
    (an entry criterion: I2 reads Conditions and Observations). Asking for any other type raises
    ``IncompleteRecord``."""

    loaded: frozenset[str] = frozenset()

    def can_read(self, resource_type: str) -> bool:
        return resource_type in self.loaded

    def of(self, resource_type: str) -> list[dict[str, Any]]:
        if resource_type not in self.loaded:
            raise IncompleteRecord(resource_type)
        return self.resources.get(resource_type, [])

    def holds(self, resource_type: str) -> bool:
        return bool(self.of(resource_type))

    def get(self, type_and_id: str) -> dict[str, Any] | None:
        rtype = type_and_id.split("/", 1)[0]
        if rtype != "Patient" and rtype not in self.loaded and type_and_id not in self.shared:
            raise IncompleteRecord(rtype)
        return PatientRecord.get(self, type_and_id)
