"""The six IMACS core set measures of a record at a baseline and a follow-up date, and their TIS.

clinical.md §1.2-1.5, criteria-tables.md R2. Per measure: the baseline value is the latest on or before the
baseline date within the baseline window; the follow-up value the one nearest the follow-up date within the
follow-up window (after the baseline date). Values arrive in the concept's canonical unit (VAS mm / 10 = cm,
CK ukat/L x 60 = U/L: ``terminology.units``).

- MMT-8: the scale maximum (80 or 150) comes with each value (code, site file or ``referenceRange.high``); the
  two values must share it. It is never guessed.
- Muscle enzyme: "the most abnormal at baseline" (PMC5577002 T3 footnote) among CK, aldolase, LDH, ALT and AST
  with a baseline value, by multiple of its ULN (``referenceRange.high`` of the same result, else a configured
  ULN). When an enzyme measured at baseline has no ULN, the choice cannot be made and the measure is missing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from fhir_adapter.response.readings import Pick, Reading, Readings, _num, latest_before, nearest
from fhir_adapter.response.tis import MeasureRule, TisResult, TisRules, percent_change, score


@dataclass(frozen=True, slots=True)
class Windows:
    """Days around the anchors within which a value counts (studies/response.json ``windows``)."""

    baseline_days: int = 30
    follow_up_days: int = 30


@dataclass(slots=True)
class MeasureValue:
    """One core set measure: the values chosen, the percent change (None when missing) and why not."""

    measure: str
    display: str
    concept: str | None
    unit: str
    baseline: Reading | None = None
    follow_up: Reading | None = None
    change_pct: float | None = None
    scale_max: float | None = None
    uln: float | None = None
    baseline_x_uln: float | None = None
    problems: list[str] = field(default_factory=list)
    candidates: list[dict[str, Any]] = field(default_factory=list)

    def describe(self, points: float | None, max_points: float) -> dict[str, Any]:
        out: dict[str, Any] = {
            "display": self.display,
            "concept": self.concept,
            "baseline": self.baseline.describe() if self.baseline else None,
            "follow_up": self.follow_up.describe() if self.follow_up else None,
            "unit": self.unit,
            "change_pct": _num(self.change_pct),
            "points": points,
            "max_points": max_points,
        }
        if self.scale_max is not None:
            out["scale_max"] = _num(self.scale_max)
        if self.uln is not None:
            out["uln"] = _num(self.uln)
            out["baseline_x_uln"] = _num(self.baseline_x_uln)
        if self.candidates:
            out["enzymes_at_baseline"] = self.candidates
        if self.problems:
            out["problems"] = self.problems
        return out


@dataclass(frozen=True, slots=True)
class CoreSet:
    """The measures and their TIS."""

    values: dict[str, MeasureValue]
    result: TisResult

    def describe(self) -> dict[str, Any]:
        scored = {m.measure: m for m in self.result.measures}
        return {k: v.describe(scored[k].points, scored[k].max_points) for k, v in self.values.items()}


def _pick_pair(readings: list[Reading], baseline: date, follow_up: date, w: Windows) -> tuple[Pick, Pick]:
    return (latest_before(readings, baseline, w.baseline_days),
            nearest(readings, follow_up, w.follow_up_days, after=baseline))


def _missing(what: str, day: date, pick: Pick, days: int, before: bool) -> list[str]:
    where = f"on or up to {days} days before {day}" if before else f"within {days} days of {day}"
    return [f"no usable {what} {where}", *pick.problems()]


def _scored(rule: MeasureRule, mv: MeasureValue, decimals: int) -> None:
    b, f = mv.baseline, mv.follow_up
    if b is None or f is None or b.value is None or f.value is None:
        return
    scale = None
    if rule.change != "relative-decrease" and rule.range is None:
        if b.scale_max is None or f.scale_max is None:
            mv.problems.append(f"{rule.display}: scale maximum not stated (give it in the code, the site file's "
                               "'scale' or referenceRange.high)")
            return
        if b.scale_max != f.scale_max:
            mv.problems.append(f"{rule.display}: scale changed from {b.scale_max:g} at baseline to "
                               f"{f.scale_max:g} at follow-up")
            return
        scale = mv.scale_max = b.scale_max
    try:
        mv.change_pct = percent_change(rule, b.value, f.value, scale, decimals)
    except ValueError as e:
        mv.problems.append(str(e))


def single_measure(rule: MeasureRule, readings: Readings, baseline: date, follow_up: date, w: Windows,
                   decimals: int = 6) -> MeasureValue:
    """A measure read from its one concept (all but the enzyme)."""
    concept = rule.concepts[0]
    mv = MeasureValue(rule.id, rule.display, concept, rule.unit)
    pb, pf = _pick_pair(readings.of(concept), baseline, follow_up, w)
    mv.baseline, mv.follow_up = pb.reading, pf.reading
    if pb.reading is None:
        mv.problems += _missing(f"{concept} value", baseline, pb, w.baseline_days, True)
    if pf.reading is None:
        mv.problems += _missing(f"{concept} value", follow_up, pf, w.follow_up_days, False)
    _scored(rule, mv, decimals)
    return mv


def enzyme_measure(rule: MeasureRule, readings: Readings, baseline: date, follow_up: date, w: Windows,
                   uln_fallback: Mapping[str, float] | None = None, decimals: int = 6) -> MeasureValue:
    """The muscle enzyme most abnormal at baseline (value / ULN), followed to the follow-up date."""
    mv = MeasureValue(rule.id, rule.display, None, rule.unit)
    best: tuple[float, str, Reading, float] | None = None
    no_uln: list[str] = []
    for concept in rule.concepts:
        pick = latest_before(readings.of(concept), baseline, w.baseline_days)
        r = pick.reading
        if r is None or r.value is None:
            continue
        uln = r.uln if r.uln else (uln_fallback or {}).get(concept)
        row: dict[str, Any] = {"concept": concept, "value": _num(r.value), "unit": r.unit, "uln": _num(uln),
                               "x_uln": _num(r.value / uln) if uln else None, "date": r.when.isoformat(),
                               "source": r.source}
        mv.candidates.append(row)
        if not uln:
            no_uln.append(concept)
            continue
        ratio = r.value / uln
        if best is None or ratio > best[0]:
            best = (ratio, concept, r, uln)
    if not mv.candidates:
        mv.problems.append(f"no usable muscle enzyme ({', '.join(rule.concepts)}) on or up to "
                           f"{w.baseline_days} days before {baseline}")
        return mv
    if no_uln:
        mv.problems.append(f"no ULN for {', '.join(no_uln)} at baseline (no referenceRange.high, none configured): "
                           "the most abnormal enzyme cannot be chosen")
        return mv
    assert best is not None
    ratio, concept, r, uln = best
    unmeasured = [c for c in rule.concepts if c not in {row["concept"] for row in mv.candidates}]
    if unmeasured:
        mv.problems.append(f"chosen among the enzymes measured at baseline; not measured: {', '.join(unmeasured)}")
    mv.concept, mv.baseline, mv.uln, mv.baseline_x_uln, mv.unit = concept, r, uln, ratio, r.unit or rule.unit
    pf = nearest(readings.of(concept), follow_up, w.follow_up_days, after=baseline)
    mv.follow_up = pf.reading
    if pf.reading is None:
        mv.problems += _missing(f"{concept} value", follow_up, pf, w.follow_up_days, False)
    _scored(rule, mv, decimals)
    return mv


def core_set(rules: TisRules, readings: Readings, baseline: date, follow_up: date, w: Windows,
             population: str = "adult", uln_fallback: Mapping[str, float] | None = None) -> CoreSet:
    """Every measure of the rules at the two dates, and the TIS they give."""
    values: dict[str, MeasureValue] = {}
    for rule in rules.measures:
        if rule.change == "relative-decrease" and len(rule.concepts) > 1:
            values[rule.id] = enzyme_measure(rule, readings, baseline, follow_up, w, uln_fallback, rules.decimals)
        else:
            values[rule.id] = single_measure(rule, readings, baseline, follow_up, w, rules.decimals)
    result = score(rules, {k: v.change_pct for k, v in values.items()}, population)
    return CoreSet(values, result)


def concepts_of(rules: TisRules) -> set[str]:
    return {c for m in rules.measures for c in m.concepts}
