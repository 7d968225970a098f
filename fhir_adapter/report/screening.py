"""The counts of a screening report, gathered as ``screen`` result lines stream past.

Memory holds counts, the worklist (candidates and potential candidates, at most ``limit`` of each) and the
``limit`` earliest ``passes_from`` dates: never one entry per ineligible patient.

The funnel (as ATLAS shows attrition): the population, then those out of the entry cohort (``"cohort":
"out"``, counted by the criterion that decided it; a line without ``cohort`` is in it), then each top-level
criterion in protocol order. A patient leaves the funnel at the first criterion that fails (an inclusion
``not-met``, an exclusion ``met``); a patient ``unknown`` on a criterion stays in it, counted apart at that
step (machine-decidable or ``decided_by: person``), and from then on among the potential ones. Patients
ineligible on no criterion (the status says why, e.g. deceased) leave at a last step.
"""

from __future__ import annotations

import heapq
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from fhir_adapter.studies.definition import Study

BUCKETS = ("met", "not-met", "unknown_machine", "unknown_person", "not_evaluated")
STATUSES = ("candidate", "potential-candidate", "ineligible")
WORKLIST = ("candidate", "potential-candidate")


def fails(kind: str, result: str | None) -> bool:
    """Whether a criterion's result makes the patient ineligible (``studies.result.fails``)."""
    return result == ("not-met" if kind == "inclusion" else "met")


def bucket(r: Any) -> str:
    """met / not-met / unknown_machine / unknown_person / not_evaluated for one criterion result."""
    if not isinstance(r, dict):
        return "not_evaluated"
    res = r.get("result")
    if res == "unknown":
        return "unknown_person" if r.get("decided_by") == "person" else "unknown_machine"
    return res if res in ("met", "not-met") else "not_evaluated"


def _settings(r: dict[str, Any]) -> list[str]:
    s = r.get("setting")
    return [s] if isinstance(s, str) else [x for x in s if isinstance(x, str)] if isinstance(s, list) else []


def other_reason(reason: Any) -> str:
    """A short label for a status ``ineligible`` that no criterion decided ("deceased on 2026-06-25" ->
    "deceased"): the words before the first date or number, so that no date of the patient is shown."""
    words = []
    for w in str(reason or "unstated").split():
        if any(ch.isdigit() for ch in w) or w in ("on", "since", "at"):
            break
        words.append(w)
    return " ".join(words) or "unstated"


@dataclass
class Shape:
    """A study's top-level criteria in protocol order, their kinds and protocol lines, and which line ids are
    parts of which criterion (the study file's parts, or an id that extends a criterion's id by a letter or a
    dot: E3a, E8.2 belong to E3, E8; E14 does not belong to E1)."""

    study: Study
    top: list[str] = field(default_factory=list)
    kind: dict[str, str] = field(default_factory=dict)
    protocol: dict[str, str] = field(default_factory=dict)
    combined: set[str] = field(default_factory=set)  # criteria the study combines from parts ("any of")
    _parent: dict[str, str | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for c in self.study.criteria:
            self.top.append(c.id)
            self.kind[c.id] = c.kind
            self.protocol[c.id] = c.protocol
            if c.parts:
                self.combined.add(c.id)
            for p in c.parts:
                self._parent[p.id] = c.id
                self.protocol[p.id] = p.protocol
        for c in self.top:
            self._parent[c] = None

    def parent(self, cid: str) -> str | None:
        if cid not in self._parent:
            owner = None
            for t in self.top:
                if cid.startswith(t) and len(cid) > len(t) and not cid[len(t)].isdigit() and \
                        (owner is None or len(t) > len(owner)):
                    owner = t
            self._parent[cid] = owner
        return self._parent[cid]


def screen_row(line: dict[str, Any], shape: Shape) -> dict[str, Any]:
    """A screen line's CSV row (``render.SCREEN_CSV``): patient, MRN, status, cohort, the failing criteria, the
    machine-decidable unknowns, those a person decides, and ``passes_from`` (``report`` and ``screen --format
    csv`` both write it)."""
    crit: dict[str, Any] = line["criteria"]
    return {"patient": line["patient"], "mrn": line.get("mrn") or "", "study": shape.study.id,
            "as_of": line.get("as_of") or "", "status": str(line["status"]), "cohort": line.get("cohort", "in"),
            "failing": [c for c in shape.top if fails(shape.kind[c], _result(crit.get(c)))],
            "unknown": [c for c in shape.top if bucket(crit.get(c)) == "unknown_machine"],
            "for_person": [c for c in shape.top if bucket(crit.get(c)) == "unknown_person"],
            "passes_from": line.get("passes_from") or ""}


@dataclass
class ScreenTally:
    """Counts for one study's screen lines (see the module docstring)."""

    shape: Shape
    limit: int = 500
    population: int = 0
    status: Counter[str] = field(default_factory=Counter)
    as_of: Counter[str] = field(default_factory=Counter)
    out_by: Counter[str] = field(default_factory=Counter)
    cohort_field: int = 0  # lines that carry "cohort"
    per_criterion: dict[str, Counter[str]] = field(default_factory=dict)
    excluded: Counter[str] = field(default_factory=Counter)
    unknown_machine: Counter[str] = field(default_factory=Counter)
    unknown_person: Counter[str] = field(default_factory=Counter)
    potential: Counter[str] = field(default_factory=Counter)  # after step k: remaining with a machine unknown
    other: Counter[str] = field(default_factory=Counter)
    final: Counter[str] = field(default_factory=Counter)  # remaining after every step, by status
    resolve: dict[str, list[Any]] = field(default_factory=dict)  # what -> [patients, only gap, criteria set]
    settings: Counter[str] = field(default_factory=Counter)  # setting -> patients whose results it decided
    passes_by_month: Counter[str] = field(default_factory=Counter)
    passes_heap: list[tuple[str, int, dict[str, Any]]] = field(default_factory=list)
    worklist: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {s: [] for s in WORKLIST})
    not_listed: Counter[str] = field(default_factory=Counter)
    unreadable: int = 0
    with_mrn: int = 0
    _seq: int = 0

    def add(self, line: dict[str, Any]) -> dict[str, Any]:
        """Count one screen line; returns its row for the CSV (patient, status, failing, unknown...)."""
        shape = self.shape
        crit: dict[str, Any] = line["criteria"]
        status = str(line["status"])
        self.population += 1
        self.status[status] += 1
        self.as_of[str(line.get("as_of"))] += 1
        if line.get("mrn"):
            self.with_mrn += 1
        if line.get("unreadable"):
            self.unreadable += 1
        cohort = line.get("cohort", "in")
        if "cohort" in line:
            self.cohort_field += 1
        row = screen_row(line, shape)
        failing, machine, person = row["failing"], row["unknown"], row["for_person"]
        if line.get("passes_from") and status == "ineligible":
            self._passes(line, failing)
        if cohort == "out":
            deciding = failing[0] if failing else next(iter(crit), "unstated")
            self.out_by[deciding] += 1
            return row
        for cid, r in crit.items():
            self.per_criterion.setdefault(cid, Counter())[bucket(r)] += 1
        used = {s for r in crit.values() if isinstance(r, dict) for s in _settings(r)}
        self.settings.update(used)
        pot = False
        for cid in shape.top:
            b = bucket(crit.get(cid))
            if fails(shape.kind[cid], _result(crit.get(cid))):
                self.excluded[cid] += 1
                break
            if b in ("unknown_machine", "not_evaluated"):
                self.unknown_machine[cid] += 1
                pot = True
            elif b == "unknown_person":
                self.unknown_person[cid] += 1
            if pot:
                self.potential[cid] += 1
        else:
            if status == "ineligible":
                self.other[other_reason(line.get("reason"))] += 1
            else:
                self.final[status] += 1
        if status == "potential-candidate":
            self._resolve(crit, machine)
        if status in WORKLIST:
            self._worklist(line, status, machine, person)
        return row

    def _resolve(self, crit: dict[str, Any], machine: list[str]) -> None:
        """Aggregate ``to_resolve``: for a combined criterion (E3, E5, E14) its unknown parts', else its own."""
        needs: dict[str, set[str]] = {}
        for cid in machine:
            items = [cid]
            if cid in self.shape.combined:
                parts = [p for p in crit if self.shape.parent(p) == cid and bucket(crit[p]) == "unknown_machine"]
                items = parts or items
            for i in items:
                r = crit.get(i) or {}
                what = str(r.get("to_resolve") or r.get("reason") or f"{i}: not evaluated")
                needs.setdefault(what, set()).add(i)
        for what, ids in needs.items():
            entry = self.resolve.setdefault(what, [0, 0, set()])
            entry[0] += 1
            entry[1] += len(needs) == 1
            entry[2].update(ids)

    def _worklist(self, line: dict[str, Any], status: str, machine: list[str], person: list[str]) -> None:
        kept = self.worklist[status]
        if len(kept) >= self.limit:
            self.not_listed[status] += 1
            return
        crit = line["criteria"]
        kept.append({
            "patient": line["patient"], "mrn": line.get("mrn"), "age": line.get("age"),
            "sex": line.get("sex", line.get("gender")), "status": status, "as_of": line.get("as_of"),
            "reason": line.get("reason"),
            "missing": [{"id": c, "what": (crit.get(c) or {}).get("to_resolve") or "not evaluated"} for c in machine],
            "for_person": person, "review": [c for c in line.get("review") or [] if c not in person],
            "unreadable": line.get("unreadable") or [], "set_aside": line.get("set_aside") or [],
            "criteria": [{"id": cid, "part_of": self.shape.parent(cid), "result": r.get("result"),
                          "bucket": bucket(r), "reason": r.get("reason"), "evidence": r.get("evidence") or [],
                          "needs_review": bool(r.get("needs_review")), "to_resolve": r.get("to_resolve"),
                          "passes_from": r.get("passes_from"), "setting": _settings(r)}
                         for cid, r in crit.items() if isinstance(r, dict)],
        })

    def _passes(self, line: dict[str, Any], failing: list[str]) -> None:
        when = str(line["passes_from"])
        self.passes_by_month[when[:7]] += 1
        self._seq += 1
        entry = {"patient": line["patient"], "mrn": line.get("mrn"), "passes_from": when, "failing": failing}
        item = (_neg(when), -self._seq, entry)  # a max-heap on the date: the latest is dropped first
        if len(self.passes_heap) < self.limit:
            heapq.heappush(self.passes_heap, item)
        else:
            heapq.heappushpop(self.passes_heap, item)

    def passes_list(self) -> list[dict[str, Any]]:
        return [e for _, _, e in sorted(self.passes_heap, key=lambda t: (t[2]["passes_from"], -t[1]))]


def _result(r: Any) -> str | None:
    return r.get("result") if isinstance(r, dict) else None


def _neg(iso: str) -> tuple[int, ...]:
    """A key that orders ISO dates latest first (for the bounded heap of the earliest dates)."""
    return tuple(-ord(ch) for ch in iso)
