"""The 2016 ACR/EULAR Total Improvement Score (TIS) from numbers: percent change, points, total, range, class.

Pure functions, no FHIR: ``measures.py`` extracts the values. The points table, bin edges, cut-offs and the
percent-change kind of each core set measure are data (``studies/tis-2016-acr-eular.json``; clinical.md §1.2-1.4):

- VAS and HAQ-DI, bounded and lower is better: (baseline - follow-up) / range x 100 (range 10 cm, 3);
- MMT-8, bounded and higher is better: (follow-up - baseline) / scale maximum x 100 (80 or 150);
- muscle enzyme, unbounded: (baseline - follow-up) / baseline x 100.

Improvement is positive. Points per measure come from its bins: x <= e1 scores the first (0: worsening of any
size scores 0, never negative), e1 < x <= e2 the second, and so on (upper edges inclusive). The TIS is the sum
(0-100); the class is none (< 20), minimal (>= 20), moderate (>= 40), major (>= 60) for adults (seed
NCT04966884: "Thresholds for minimal, moderate, and major improvement were >=20, >=40, and >=60 points").

A measure missing at baseline or follow-up makes the TIS unknown (None); ``TisResult.range`` is then the lowest
and highest totals still possible, and the class is given only when every possible total falls in one class
(clinical.md §1.6).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

from fhir_adapter.errors import ConfigError
from fhir_adapter.paths import data_dir

ChangeKind = Literal["absolute-decrease", "absolute-increase", "relative-decrease"]
RULES_ID = "tis-2016-acr-eular"


@dataclass(frozen=True, slots=True)
class MeasureRule:
    """How one core set measure is scored: its percent-change kind, range, bins and points."""

    id: str
    display: str
    concepts: tuple[str, ...]
    unit: str
    change: ChangeKind
    range: float | None  # None: the range is the measure's own scale maximum (MMT-8: 80 or 150)
    edges: tuple[float, ...]
    points: tuple[float, ...]
    scales: tuple[float, ...] = ()  # the scale maxima allowed when ``range`` is None

    @property
    def max_points(self) -> float:
        return max(self.points)

    @property
    def min_points(self) -> float:
        return min(self.points)


@dataclass(frozen=True, slots=True)
class TisRules:
    """The whole scoring rule set: measures in order, cut-offs per population, rounding."""

    id: str
    measures: tuple[MeasureRule, ...]
    cutoffs: Mapping[str, tuple[tuple[str, float], ...]]
    below: str = "none"
    responder_from: str = "minimal"
    decimals: int = 6

    def measure(self, measure_id: str) -> MeasureRule:
        for m in self.measures:
            if m.id == measure_id:
                return m
        raise ConfigError(f"{self.id}: no measure {measure_id!r}")

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(m.id for m in self.measures)


@dataclass(frozen=True, slots=True)
class MeasureScore:
    """One measure's percent change and points; both None when the measure is missing."""

    measure: str
    change_pct: float | None
    points: float | None
    max_points: float


@dataclass(frozen=True, slots=True)
class TisResult:
    """The TIS (None when a measure is missing), the possible range, the class and the responder status."""

    tis: float | None
    range: tuple[float, float]
    category: str | None
    responder: bool | None
    measures: tuple[MeasureScore, ...]
    missing: tuple[str, ...]


# -- loading ---------------------------------------------------------------------------------------------------


def rules_from(document: Mapping[str, Any], label: str = RULES_ID) -> TisRules:
    """Rules from the parsed JSON document; ConfigError naming the entry when it is malformed."""
    try:
        measures = []
        for i, raw in enumerate(document["measures"]):
            where = f"{label}: measures[{i}] ({raw.get('id')!r})"
            edges = tuple(float(e) for e in raw["edges"])
            points = tuple(float(p) for p in raw["points"])
            if len(points) != len(edges) + 1 or list(edges) != sorted(edges):
                raise ConfigError(f"{where}: needs ascending edges and one more points than edges")
            if raw["change"] not in ("absolute-decrease", "absolute-increase", "relative-decrease"):
                raise ConfigError(f"{where}: unknown change kind {raw['change']!r}")
            rng = raw.get("range")
            if raw["change"].startswith("absolute") and not (rng == "scale" or isinstance(rng, int | float)):
                raise ConfigError(f"{where}: an absolute change needs a numeric range or \"scale\"")
            measures.append(MeasureRule(
                id=raw["id"], display=raw["display"], concepts=tuple(raw["concepts"]), unit=raw["unit"],
                change=raw["change"], range=float(rng) if isinstance(rng, int | float) else None, edges=edges,
                points=points, scales=tuple(float(s) for s in raw.get("scales", ()))))
        cutoffs = {pop: tuple((str(c), float(v)) for c, v in rows) for pop, rows in document["cutoffs"].items()}
        for pop, rows in cutoffs.items():
            if [v for _, v in rows] != sorted(v for _, v in rows):
                raise ConfigError(f"{label}: cutoffs.{pop} must be ascending")
        return TisRules(id=document.get("id", label), measures=tuple(measures), cutoffs=cutoffs,
                        below=document.get("below_cutoffs", "none"),
                        responder_from=document.get("responder_from", "minimal"),
                        decimals=int(document.get("rounding_decimals", 6)))
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"{label}: malformed TIS rules ({type(e).__name__}: {e})") from None


def load_rules(path: Path | str | None = None) -> TisRules:
    """The TIS rules from ``path``, or the package's ``studies/tis-2016-acr-eular.json`` (cached)."""
    if path is None:
        return _default_rules()
    p = Path(path)
    try:
        document = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"{p}: cannot read TIS rules: {e}") from None
    return rules_from(document, str(p))


@cache
def _default_rules() -> TisRules:
    return load_rules(data_dir("studies") / f"{RULES_ID}.json")


# -- scoring ---------------------------------------------------------------------------------------------------


def percent_change(rule: MeasureRule, baseline: float, follow_up: float, scale_max: float | None = None,
                   decimals: int = 6) -> float:
    """The measure's percent change, improvement positive, rounded to ``decimals``.

    ValueError when it cannot be had: a relative change from a baseline of 0 or less, or an absolute change
    on the measure's own scale without ``scale_max`` (or with one the rule does not allow).
    """
    if rule.change == "relative-decrease":
        if baseline <= 0:
            raise ValueError(f"{rule.display}: relative change from a baseline of {baseline:g} is undefined")
        change = (baseline - follow_up) / baseline * 100
    else:
        span = rule.range
        if span is None:
            if scale_max is None:
                raise ValueError(f"{rule.display}: the scale maximum is not known")
            if rule.scales and scale_max not in rule.scales:
                allowed = " or ".join(f"{s:g}" for s in rule.scales)
                raise ValueError(f"{rule.display}: scale maximum {scale_max:g} is not {allowed}")
            span = scale_max
        diff = follow_up - baseline if rule.change == "absolute-increase" else baseline - follow_up
        change = diff / span * 100
    return round(change, decimals) + 0.0  # + 0.0 turns -0.0 into 0.0


def points_for(rule: MeasureRule, change_pct: float) -> float:
    """Points of a percent change: x <= e1 -> points[0], e1 < x <= e2 -> points[1], ..., x > last -> last."""
    for edge, pts in zip(rule.edges, rule.points, strict=False):
        if change_pct <= edge:
            return pts
    return rule.points[-1]


def category(rules: TisRules, total: float, population: str = "adult") -> str:
    """The improvement class of a total: the highest cut-off reached, else ``rules.below`` ("none")."""
    reached = rules.below
    for name, threshold in rules.cutoffs[population]:
        if total >= threshold:
            reached = name
    return reached


def score(rules: TisRules, changes: Mapping[str, float | None], population: str = "adult") -> TisResult:
    """The TIS from each measure's percent change (None or absent: missing).

    The range runs from the known points plus each missing measure's lowest points to the known points plus
    their highest; the class and responder status are decided only when both ends agree.
    """
    if population not in rules.cutoffs:
        raise ConfigError(f"{rules.id}: no cut-offs for population {population!r}")
    scored: list[MeasureScore] = []
    missing: list[str] = []
    low = high = 0.0
    for rule in rules.measures:
        change = changes.get(rule.id)
        if change is None:
            missing.append(rule.id)
            scored.append(MeasureScore(rule.id, None, None, rule.max_points))
            low += rule.min_points
            high += rule.max_points
            continue
        pts = points_for(rule, change)
        scored.append(MeasureScore(rule.id, change, pts, rule.max_points))
        low += pts
        high += pts
    low, high = round(low, 6), round(high, 6)
    lo_class, hi_class = category(rules, low, population), category(rules, high, population)
    threshold = dict(rules.cutoffs[population])[rules.responder_from]
    lo_resp, hi_resp = low >= threshold, high >= threshold
    return TisResult(
        tis=low if not missing else None,
        range=(low, high),
        category=lo_class if lo_class == hi_class else None,
        responder=lo_resp if lo_resp == hi_resp else None,
        measures=tuple(scored),
        missing=tuple(missing),
    )
