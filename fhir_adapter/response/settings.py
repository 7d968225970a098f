"""Response settings per study, from ``studies/response.json``: anchors, windows, inactive disease, endpoints,
safety signals and visit courses. Every number is data with its protocol line or design note beside it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from fhir_adapter.errors import ConfigError
from fhir_adapter.paths import data_dir
from fhir_adapter.response.measures import Windows

FILE = "response.json"


@dataclass(frozen=True, slots=True)
class StudyResponse:
    """One study's response settings (the raw entry stays available as ``raw``)."""

    id: str
    title: str
    aliases: tuple[str, ...]
    drug_concept: str
    drug_class: str | None
    baseline_rule: str  # "first-drug-exposure" | "randomization"
    follow_up_months: int | None
    follow_up_weeks: int | None
    population: str
    windows: Windows
    inactive: dict[str, Any] | None
    endpoints: tuple[str, ...]
    respiratory: tuple[str, ...]
    safety: bool
    course: dict[str, Any]
    raw: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ResponseSettings:
    studies: dict[str, StudyResponse]
    endpoints: dict[str, dict[str, Any]]
    safety: dict[str, Any]
    path: str

    def study(self, name: str) -> StudyResponse:
        """The study named by its id or an alias (case-insensitive): "NCT04966884", "promis-mda5"."""
        key = name.strip().lower()
        for s in self.studies.values():
            if key == s.id.lower() or key in s.aliases:
                return s
        known = ", ".join(f"{s.id} ({', '.join(s.aliases)})" for s in self.studies.values())
        raise ConfigError(f"unknown study {name!r}; known: {known}")


def _study(sid: str, raw: dict[str, Any], label: str, endpoints: dict[str, Any]) -> StudyResponse:
    where = f"{label}: studies.{sid}"
    try:
        w = raw["windows"]
        follow = raw["follow_up"]
        study = StudyResponse(
            id=sid, title=raw.get("title", sid), aliases=tuple(a.lower() for a in raw.get("aliases", ())),
            drug_concept=raw["drug"]["concept"], drug_class=raw["drug"].get("class"),
            baseline_rule=raw["baseline"]["rule"], follow_up_months=follow.get("months"),
            follow_up_weeks=follow.get("weeks"), population=raw["tis"].get("population", "adult"),
            windows=Windows(int(w["baseline_days"]), int(w["follow_up_days"])), inactive=raw.get("inactive_disease"),
            endpoints=tuple(raw.get("endpoints", ())), respiratory=tuple(raw.get("respiratory", ())),
            safety=bool(raw.get("safety", False)), course=dict(raw.get("course") or {}), raw=raw)
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"{where}: malformed ({type(e).__name__}: {e})") from None
    if study.baseline_rule not in ("first-drug-exposure", "randomization"):
        raise ConfigError(f"{where}.baseline.rule: unknown rule {study.baseline_rule!r}")
    if (study.follow_up_months is None) == (study.follow_up_weeks is None):
        raise ConfigError(f"{where}.follow_up: give exactly one of months or weeks")
    for e in (*study.endpoints, *study.respiratory):
        if e not in endpoints:
            raise ConfigError(f"{where}: unknown endpoint {e!r} (not in 'endpoints')")
    return study


def load_settings(path: Path | str | None = None) -> ResponseSettings:
    """The settings from ``path``, or the package's ``studies/response.json`` (cached)."""
    if path is None:
        return _default()
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"{p}: cannot read response settings: {e}") from None
    label = str(p)
    try:
        endpoints = dict(doc["endpoints"])
        studies = {sid: _study(sid, raw, label, endpoints) for sid, raw in doc["studies"].items()}
        return ResponseSettings(studies, endpoints, dict(doc["safety"]), label)
    except (KeyError, TypeError) as e:
        raise ConfigError(f"{label}: malformed ({type(e).__name__}: {e})") from None


@cache
def _default() -> ResponseSettings:
    return load_settings(data_dir("studies") / FILE)
