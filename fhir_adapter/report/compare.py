"""What changed since an earlier run (``--compare PREVIOUS``): new candidates, status changes, and the
``passes_from`` dates of the earlier run that the new run's screening date has reached.

The earlier run's screen lines are read first into a map (study, patient) -> (status, passes_from): the only
structure of a report that grows with the whole population (about 20 MB per 100,000 patients; README
"Reports"). Each new line takes its patient out of the map, so what is left at the end is the patients the
new run no longer has.
"""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from fhir_adapter.report.lines import SCREEN, BadLine, kind_of, read_lines

STATUS_CODE = {"candidate": 0, "potential-candidate": 1, "ineligible": 2}
CODE_STATUS = {v: k for k, v in STATUS_CODE.items()}
BEFORE = ("candidate", "potential-candidate", "ineligible", "new")
AFTER = ("candidate", "potential-candidate", "ineligible", "gone")


def load_previous(names: list[str], bad: list[BadLine]) -> dict[tuple[str, str], tuple[int, str | None]]:
    """The earlier run's screen lines as (study, patient) -> (status code, passes_from). Response lines are
    skipped (the comparison is of screening status); unreadable lines are added to ``bad``."""
    previous: dict[tuple[str, str], tuple[int, str | None]] = {}
    for _name, _n, line in read_lines(names):
        if isinstance(line, BadLine):
            bad.append(line)
            continue
        if kind_of(line) != SCREEN:
            continue
        code = STATUS_CODE.get(line["status"])
        if code is None:
            bad.append(BadLine(f"{_name}:{_n}", f"unknown status {line['status']!r}"))
            continue
        pf = line.get("passes_from")
        previous[(sys.intern(str(line.get("study"))), line["patient"])] = (code, pf if isinstance(pf, str) else None)
    return previous


@dataclass
class CompareTally:
    previous: dict[tuple[str, str], tuple[int, str | None]]
    limit: int = 500
    studies: set[str] = field(default_factory=set)
    transitions: Counter[tuple[str, str]] = field(default_factory=Counter)
    before: Counter[str] = field(default_factory=Counter)
    reached: Counter[str] = field(default_factory=Counter)  # passes_from reached, by the new status
    new_candidates: list[dict[str, Any]] = field(default_factory=list)
    changes: list[dict[str, Any]] = field(default_factory=list)
    reached_list: list[dict[str, Any]] = field(default_factory=list)
    not_listed: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        for (_study, _p), (code, _) in self.previous.items():
            self.before[CODE_STATUS[code]] += 1

    def add(self, line: dict[str, Any]) -> None:
        study = str(line.get("study"))
        self.studies.add(study)
        status = str(line["status"])
        prev = self.previous.pop((study, line["patient"]), None)
        was = CODE_STATUS[prev[0]] if prev else "new"
        self.transitions[(was, status)] += 1
        entry = {"patient": line["patient"], "mrn": line.get("mrn"), "study": study, "before": was,
                 "now": status, "passes_from_before": prev[1] if prev else None}
        if status == "candidate" and was != "candidate":
            self._keep(self.new_candidates, "new_candidates", entry)
        if prev and was != status:
            self._keep(self.changes, "changes", entry)
        as_of = line.get("as_of")
        if prev and prev[1] and isinstance(as_of, str) and prev[1] <= as_of:
            self.reached[status] += 1
            self._keep(self.reached_list, "reached", entry)

    def _keep(self, kept: list[dict[str, Any]], name: str, entry: dict[str, Any]) -> None:
        if len(kept) < self.limit:
            kept.append(entry)
        else:
            self.not_listed[name] += 1

    def summary(self) -> dict[str, Any]:
        for (study, _p), (code, _) in self.previous.items():
            if study in self.studies:
                self.transitions[(CODE_STATUS[code], "gone")] += 1
        # patients of a study the new run does not have at all are no change of theirs: not counted as gone
        other = Counter(CODE_STATUS[code] for (study, _p), (code, _) in self.previous.items()
                        if study not in self.studies)
        before = {s: self.before[s] - other[s] for s in BEFORE if s != "new"}
        before["new"] = sum(v for (b, _), v in self.transitions.items() if b == "new")
        return {"transitions": {b: {a: self.transitions[(b, a)] for a in AFTER} for b in BEFORE},
                "before": before,
                "new_candidates": sum(v for (b, a), v in self.transitions.items()
                                      if a == "candidate" and b != "candidate"),
                "changed": sum(v for (b, a), v in self.transitions.items()
                               if b not in ("new",) and a not in ("gone",) and a != b),
                "reached": {s: self.reached[s] for s in ("candidate", "potential-candidate", "ineligible")},
                "reached_total": sum(self.reached.values()),
                "new_candidate_list": self.new_candidates, "change_list": self.changes,
                "reached_list": self.reached_list, "not_listed": dict(self.not_listed)}
