"""The counts of a treatment-response report, gathered as ``response`` result lines stream past.

Per study: the TIS class distribution (``category``; null = not decidable), inactive disease (true / false /
unknown), per measure how many improved / did not change / worsened (``change_pct``, improvement positive)
and the median change, per endpoint how many rose / fell / stayed and the median change, and the safety
signals flagged. Medians keep one number per scored patient and measure (response lines are the treated
patients, not the whole population); the per-patient table is bounded like the screening worklist.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from statistics import median
from typing import Any

CLASSES = ("major", "moderate", "minimal", "none", "unknown")
INACTIVE = ("yes", "no", "unknown")
DIRECTIONS = ("improved", "unchanged", "worsened", "missing")
MOVES = ("rose", "unchanged", "fell", "missing")


def _direction(x: Any, up: str, down: str) -> str:
    if not isinstance(x, (int, float)) or isinstance(x, bool):
        return "missing"
    return up if x > 0 else down if x < 0 else "unchanged"


def _inactive(line: dict[str, Any]) -> str:
    inact = line.get("inactive_disease")
    return "yes" if inact is True else "no" if inact is False else "unknown"


def response_row(line: dict[str, Any], study: str) -> dict[str, Any]:
    """A response line's CSV row (``render.RESPONSE_CSV``; ``report`` and ``response --format csv`` both write
    it)."""
    signals = {f"{s.get('signal')}: {s.get('concept')}" for s in line.get("safety") or [] if isinstance(s, dict)}
    return {"patient": line["patient"], "mrn": line.get("mrn") or "", "study": study,
            "tis": line.get("tis"), "tis_range": line.get("tis_range") or [None, None],
            "category": line.get("category") if line.get("category") in CLASSES else "unknown",
            "inactive_disease": _inactive(line), "missing": list(line.get("missing") or []),
            "safety": sorted(signals), "baseline": (line.get("baseline") or {}).get("date"),
            "follow_up": (line.get("follow_up") or {}).get("date")}


@dataclass
class ResponseTally:
    study: str
    limit: int = 500
    scored: int = 0
    classes: Counter[str] = field(default_factory=Counter)
    responder: Counter[str] = field(default_factory=Counter)
    inactive: Counter[str] = field(default_factory=Counter)
    measures: dict[str, dict[str, Any]] = field(default_factory=dict)
    endpoints: dict[str, dict[str, Any]] = field(default_factory=dict)
    safety: Counter[str] = field(default_factory=Counter)  # signal: concept -> patients
    patients: list[dict[str, Any]] = field(default_factory=list)
    not_listed: int = 0

    def add(self, line: dict[str, Any]) -> dict[str, Any]:
        """Count one response line; returns its row for the CSV."""
        self.scored += 1
        cat = line.get("category") if line.get("category") in CLASSES else "unknown"
        self.classes[cat] += 1
        resp = line.get("responder")
        self.responder["yes" if resp is True else "no" if resp is False else "unknown"] += 1
        self.inactive[_inactive(line)] += 1
        for key, m in (line.get("measures") or {}).items():
            if not isinstance(m, dict):
                continue
            slot = self.measures.setdefault(key, {"display": m.get("display") or key, "counts": Counter(),
                                                  "changes": []})
            d = _direction(m.get("change_pct"), "improved", "worsened")
            slot["counts"][d] += 1
            if d != "missing":
                slot["changes"].append(float(m["change_pct"]))
        for key, e in (line.get("endpoints") or {}).items():
            if not isinstance(e, dict):
                continue
            slot = self.endpoints.setdefault(key, {"display": e.get("display") or key, "unit": e.get("unit") or "",
                                                   "counts": Counter(), "changes": []})
            d = _direction(e.get("change"), "rose", "fell")
            slot["counts"][d] += 1
            if d != "missing":
                slot["changes"].append(float(e["change"]))
        row = response_row(line, self.study)
        self.safety.update(row["safety"])
        if len(self.patients) < self.limit:
            self.patients.append(row)
        else:
            self.not_listed += 1
        return row

    def summary(self) -> dict[str, Any]:
        def table(slots: dict[str, dict[str, Any]], names: tuple[str, ...]) -> list[dict[str, Any]]:
            return [{"id": k, "display": s["display"], "unit": s.get("unit"),
                     **{n: s["counts"][n] for n in names}, "n": sum(s["counts"][n] for n in names),
                     "median_change": round(median(s["changes"]), 2) if s["changes"] else None,
                     "n_changes": len(s["changes"])}
                    for k, s in slots.items()]

        return {"kind": "response", "study": self.study, "scored": self.scored,
                "classes": {c: self.classes[c] for c in CLASSES},
                "responder": {c: self.responder[c] for c in ("yes", "no", "unknown")},
                "inactive": {c: self.inactive[c] for c in INACTIVE},
                "measures": table(self.measures, DIRECTIONS),
                "endpoints": table(self.endpoints, MOVES),
                "safety": [{"signal": k, "patients": v} for k, v in sorted(self.safety.items())],
                "patients": self.patients, "not_listed": self.not_listed}
