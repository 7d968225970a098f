"""``ReadReport``: what a source read, set aside and skipped, and why.

Every skipped resource gets a log message naming it (file and line for NDJSON, the request for a server)
and the reason; the counts make the summary the command line prints at the end. Reports from worker
processes merge into one.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("fhir_adapter.sources")

NOT_READ_IDS = 10_000  # ids of patients not read kept for messages (``--patient`` asked for one of them)


@dataclass
class ReadReport:
    read: Counter[str] = field(default_factory=Counter)  # resource type -> used
    set_aside: Counter[str] = field(default_factory=Counter)  # "Observation status entered-in-error" -> n
    skipped: Counter[str] = field(default_factory=Counter)  # kind of skip -> n
    example: dict[str, str] = field(default_factory=dict)  # kind -> first message of that kind
    quiet_kinds: set[str] = field(default_factory=set)  # kinds that are expected, not problems
    # patients the source holds but could not give a whole record of: no result for them (exit status 3)
    not_read: Counter[str] = field(default_factory=Counter)  # kind -> patients
    not_read_example: dict[str, str] = field(default_factory=dict)  # kind -> first message of that kind
    # things read as they are but worth saying (a Patient merged into the one that replaced it, a link not followed)
    noted: Counter[str] = field(default_factory=Counter)  # kind -> n
    noted_example: dict[str, str] = field(default_factory=dict)  # kind -> first message of that kind
    # the ids of the first ``NOT_READ_IDS`` patients not read (``not_read_ids_full``: more were not read)
    not_read_ids: set[str] = field(default_factory=set)
    not_read_ids_full: bool = False
    not_read_unnamed: int = 0  # patients not read whose id is not known (a file cut short)
    # Patient id -> the id of the Patient that replaced it (Patient.link), whose record holds its resources
    merged: dict[str, str] = field(default_factory=dict)
    # messages held back (level, text) instead of logged: a trial reading that may be thrown away (``replay_into``)
    deferred: list[tuple[int, str]] | None = None

    def count_read(self, resource_type: str, n: int = 1) -> None:
        self.read[resource_type] += n

    def count_set_aside(self, resource_type: str, reason: str) -> None:
        self.set_aside[f"{resource_type} {reason}"] += 1

    def skip(self, where: str, reason: str, resource: str | None = None, *, kind: str | None = None,
             quiet: bool = False) -> None:
        """Count one skipped resource and log why. ``kind`` groups skips in the summary (default: reason)."""
        kind = kind or reason
        message = f"skipped {resource + ' ' if resource else ''}({where}): {reason}"
        self.skipped[kind] += 1
        if quiet:
            self.quiet_kinds.add(kind)
            self._log(logging.DEBUG, message)
        else:
            self.example.setdefault(kind, message)
            self._log(logging.WARNING, message)

    def patient_not_read(self, patient: str | None, where: str, reason: str, *, kind: str | None = None,
                         n: int = 1, also: Iterable[str] = ()) -> None:
        """Count ``n`` patients (``patient``, when known: ``Patient/id``) who get no result because their record
        could not be read whole (a server error, a file cut short). A run with any is incomplete (exit status 3).
        ``also``: ids of Patients merged with it (Patient.link), not read either."""
        kind = kind or reason
        message = f"{patient + ' ' if patient else ''}not read ({where}): {reason}"
        self.not_read[kind] += n
        self.not_read_example.setdefault(kind, message)
        if not patient:
            self.not_read_unnamed += n
        ids = [*([patient.removeprefix("Patient/")] if patient else []), *also]
        self._keep_not_read(ids)
        self._log(logging.WARNING, message)

    def _keep_not_read(self, ids: Iterable[str]) -> None:
        for pid in ids:
            if len(self.not_read_ids) >= NOT_READ_IDS:
                self.not_read_ids_full = True
                return
            self.not_read_ids.add(pid)

    def merged_into(self, replaced: str, survivor: str) -> None:
        """Patient ``replaced`` is read as part of Patient ``survivor`` (Patient.link): its result is the
        survivor's (a ``--patient`` asked for by the replaced id is then not missing)."""
        self.merged[replaced] = survivor

    def note(self, where: str, message: str, *, kind: str, quiet: bool = False) -> None:
        """Count something read as it is but worth saying, and log it (a warning unless ``quiet``)."""
        self.noted[kind] += 1
        self.noted_example.setdefault(kind, f"{message} ({where})")
        self._log(logging.DEBUG if quiet else logging.WARNING, f"{message} ({where})")

    def _log(self, level: int, message: str) -> None:
        if self.deferred is None:
            log.log(level, message)
        else:
            self.deferred.append((level, message))

    def replay_into(self, other: ReadReport) -> None:
        """Add this report's counts to ``other`` and log the messages it held back (``deferred``)."""
        other.merge(self)
        for level, message in self.deferred or ():
            other._log(level, message)

    @property
    def patients_not_read(self) -> int:
        return sum(self.not_read.values())

    def ignore(self, kind: str, n: int = 1) -> None:
        """Count resources skipped on purpose (e.g. a type no criterion uses): expected, not a problem."""
        self.skipped[kind] += n
        self.quiet_kinds.add(kind)

    def merge(self, other: ReadReport) -> None:
        self.read.update(other.read)
        self.set_aside.update(other.set_aside)
        self.skipped.update(other.skipped)
        self.quiet_kinds |= other.quiet_kinds
        self.not_read.update(other.not_read)
        for k, v in other.not_read_example.items():
            self.not_read_example.setdefault(k, v)
        self.noted.update(other.noted)
        self._keep_not_read(sorted(other.not_read_ids))
        self.not_read_ids_full |= other.not_read_ids_full
        self.not_read_unnamed += other.not_read_unnamed
        self.merged.update(other.merged)
        for k, v in other.noted_example.items():
            self.noted_example.setdefault(k, v)
        for k, v in other.example.items():
            self.example.setdefault(k, v)

    @property
    def total_skipped(self) -> int:
        """Every resource not read: problems and resources skipped on purpose."""
        return sum(self.skipped.values())

    @property
    def problems(self) -> int:
        """Resources skipped because something was wrong with them."""
        return sum(n for k, n in self.skipped.items() if k not in self.quiet_kinds)

    def as_dict(self) -> dict[str, Any]:
        return {
            "read": dict(sorted(self.read.items())),
            "set_aside": dict(sorted(self.set_aside.items())),
            "skipped": dict(sorted(self.skipped.items())),
            "patients_not_read": dict(sorted(self.not_read.items())),
            "noted": dict(sorted(self.noted.items())),
        }

    def summary_lines(self) -> list[str]:
        """A few lines for people: what was used, set aside and skipped, with one example per kind."""
        lines = [f"read {sum(self.read.values()):,} resources: "
                 + ", ".join(f"{t} {n:,}" for t, n in sorted(self.read.items()))]
        if self.set_aside:
            lines.append(f"set aside {sum(self.set_aside.values()):,} (not data): "
                         + ", ".join(f"{k} {n:,}" for k, n in sorted(self.set_aside.items())))
        quiet = {k: n for k, n in self.skipped.items() if k in self.quiet_kinds}
        if quiet:
            lines.append(f"ignored {sum(quiet.values()):,}: "
                         + ", ".join(f"{k} {n:,}" for k, n in sorted(quiet.items(), key=lambda kv: -kv[1])))
        if self.problems:
            lines.append(f"skipped {self.problems:,} with problems:")
            for kind, n in sorted(self.skipped.items(), key=lambda kv: -kv[1]):
                if kind not in self.quiet_kinds:
                    lines.append(f"  {n:,} x {kind}  (e.g. {self.example.get(kind, kind)})")
        for kind, n in sorted(self.noted.items()):
            lines.append(f"noted {n:,} x {kind}  (e.g. {self.noted_example.get(kind, kind)})")
        if self.not_read:
            lines.append(f"INCOMPLETE: {self.patients_not_read:,} patient{'s' if self.patients_not_read != 1 else ''}"
                         " could not be read whole and got no result:")
            for kind, n in sorted(self.not_read.items(), key=lambda kv: -kv[1]):
                lines.append(f"  {n:,} x {kind}  (e.g. {self.not_read_example.get(kind, kind)})")
        return lines
