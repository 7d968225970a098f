"""The one interface every source offers: stream resources, or stream whole patient records.

A source never holds a population in memory: ``records`` yields one ``PatientRecord`` at a time and
``map_records`` lets a source spread the work (and a caller's function) over worker processes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from fhir_adapter.record.patient_record import PatientRecord
from fhir_adapter.sources.report import ReadReport

R = TypeVar("R")


@dataclass(frozen=True)
class Early:
    """A decision that a few resource types may settle before the rest of a record is read (an entry criterion:
    a patient with no dermatomyositis among the Conditions needs no drugs parsed).

    ``decide`` gets a ``PartialRecord`` holding the Patient and ``types`` and returns the caller's result when
    those settle it, else None (the whole record is then read and mapped as usual). It reads nothing else: a
    ``PartialRecord`` raises ``IncompleteRecord`` for any other type, and the whole record is read instead.
    """

    types: frozenset[str]
    decide: Callable[[PatientRecord], Any]


class Source(ABC):
    """A place FHIR resources come from. ``report`` counts what was read, set aside and skipped."""

    name: str

    def __init__(self) -> None:
        self.report = ReadReport()

    @abstractmethod
    def resources(self, types: Collection[str] | None = None) -> Iterator[tuple[dict[str, Any], str]]:
        """Every resource (of ``types``, when given) with where it came from, in source order."""

    @abstractmethod
    def records(self, patients: Collection[str] | None = None) -> Iterator[PatientRecord]:
        """One record per patient (only ``patients``, when given, by Patient id)."""

    #: whether ``map_records`` applies a ``prefilter`` (records then lack what it skipped)
    prefilters: bool = False

    def map_records(self, fn: Callable[[PatientRecord], R], patients: Collection[str] | None = None,
                    workers: int = 1, prefilter: Any = None, early: Early | None = None) -> Iterator[R]:
        """``fn`` applied to every record. Sources that can work in parallel override this; those that can skip
        unread Observations before parsing them (``prefilters``) apply ``prefilter``, and ``early`` (a decision
        from a few types before parsing the rest), the others ignore both: ``fn`` alone gives the same results."""
        for record in self.records(patients):
            yield fn(record)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release files, sessions and temporary folders."""

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
