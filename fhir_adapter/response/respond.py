"""One patient's treatment response as a JSON-ready dict: baseline and follow-up, TIS, inactive disease,
endpoints, safety signals and (optionally) the visit course.

Anchors (studies/response.json): NCT04966884's baseline is the start of the first tofacitinib exposure
(criteria-tables.md T3, "Start = B"; ``terminology.exposure``) and its follow-up 12 months later (seed: "after
treatment with tofacitinib for 12 months"); PROMIS-MDA5's baseline is the randomization date (``--baseline``)
and its follow-up week 8. Either can be given.
"""

from __future__ import annotations

import calendar
import logging
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from fhir_adapter.record.mrn import mrn_fields
from fhir_adapter.record.patient_record import PatientRecord
from fhir_adapter.response.course import recorded_visits, scheduled_visits, visit_course
from fhir_adapter.response.endpoints import concepts_of as endpoint_concepts
from fhir_adapter.response.endpoints import endpoint_changes
from fhir_adapter.response.inactive import InactiveRules, inactive_disease
from fhir_adapter.response.measures import Windows, concepts_of, core_set
from fhir_adapter.response.readings import read_readings
from fhir_adapter.response.safety import lab_concepts, safety_signals
from fhir_adapter.response.settings import ResponseSettings, StudyResponse
from fhir_adapter.response.tis import TisRules
from fhir_adapter.terminology.catalog import Catalog
from fhir_adapter.terminology.exposure import read_exposures

log = logging.getLogger(__name__)


def add_months(day: date, months: int) -> date:
    """The same day ``months`` calendar months later (the month's last day when it has fewer days)."""
    y, m = divmod(day.month - 1 + months, 12)
    year, month = day.year + y, m + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


@dataclass(frozen=True, slots=True)
class Anchor:
    day: date | None
    how: str
    source: str | None = None


def first_exposure(record: PatientRecord, catalog: Catalog, concept_id: str) -> Anchor:
    """The start of the first exposure to the drug (taken, with a start date)."""
    starts = [(e.start, e.source) for e in read_exposures(record, catalog).items
              if e.concept.id == concept_id and e.taken and e.start is not None]
    if not starts:
        return Anchor(None, f"no {concept_id} exposure with a start date")
    day, source = min(starts)
    return Anchor(day, f"first {concept_id} exposure", source)


@dataclass
class Responder:
    """Computes one patient's response for a study; built once, called per record (also in worker processes)."""

    study: StudyResponse
    settings: ResponseSettings
    rules: TisRules
    catalog: Catalog
    baseline: date | None = None
    at: date | None = None
    course: bool = False

    def __post_init__(self) -> None:
        inactive = self.study.inactive
        self.inactive_rules = None if not inactive else InactiveRules(
            ck_max=float(inactive["ck_max"]), phga_max=float(inactive["phga_max"]),
            myoact_max=float(inactive["myoact_max"]), tolerance_days=int(inactive["visit_tolerance_days"]),
            organs=tuple(c.id for c in self.catalog.members("myoact-organ")),
            extramuscular=tuple(c.id for c in self.catalog.members("myoact-extramuscular")))
        self.concepts = concepts_of(self.rules) | endpoint_concepts(
            self.settings.endpoints, (*self.study.endpoints, *self.study.respiratory))
        if self.inactive_rules:
            self.concepts |= self.inactive_rules.concepts
        if self.study.safety:
            self.concepts |= lab_concepts(self.settings.safety)

    # -- anchors -----------------------------------------------------------------------------------------------

    def on_study_drug(self, record: PatientRecord) -> bool:
        return first_exposure(record, self.catalog, self.study.drug_concept).day is not None

    def baseline_of(self, record: PatientRecord) -> Anchor:
        if self.baseline is not None:
            return Anchor(self.baseline, "given (--baseline)")
        found = first_exposure(record, self.catalog, self.study.drug_concept)
        if self.study.baseline_rule == "randomization" and found.day is not None:
            return Anchor(found.day, f"{found.how}, standing in for the randomization date (not in the data: give "
                                     "--baseline)", found.source)
        return found

    def follow_up_of(self, baseline: date) -> Anchor:
        if self.at is not None:
            return Anchor(self.at, "given (--at)")
        if self.study.follow_up_months is not None:
            return Anchor(add_months(baseline, self.study.follow_up_months),
                          f"baseline + {self.study.follow_up_months} months")
        weeks = self.study.follow_up_weeks or 0
        return Anchor(baseline + timedelta(weeks=weeks), f"baseline + {weeks} weeks")

    # -- the result ----------------------------------------------------------------------------------------------

    def __call__(self, record: PatientRecord) -> dict[str, Any]:
        out: dict[str, Any] = {"patient": record.reference,
                               **mrn_fields(record.patient, getattr(self.catalog, "mrn_system", None)),
                               "study": self.study.id}
        b = self.baseline_of(record)
        if b.day is None:
            out.update(baseline=None, follow_up=None, tis=None, tis_range=None, category=None, responder=None,
                       inactive_disease=None, measures=None, endpoints=None,
                       problems=[f"baseline unknown: {b.how}; give --baseline YYYY-MM-DD"])
            return out
        f = self.follow_up_of(b.day)
        assert f.day is not None
        out["baseline"] = {"date": b.day.isoformat(), "from": b.how, **({"source": b.source} if b.source else {})}
        out["follow_up"] = {"date": f.day.isoformat(), "from": f.how}
        problems: list[str] = []
        if f.day <= b.day:
            problems.append(f"follow-up {f.day} is not after baseline {b.day}")
        w = self.study.windows
        readings = read_readings(record, self.catalog, self.concepts)
        cs = core_set(self.rules, readings, b.day, f.day, w, self.study.population)
        r = cs.result
        out.update(tis=r.tis, tis_range=list(r.range), category=r.category, responder=r.responder)
        if r.missing:
            out["missing"] = list(r.missing)
        inactive = None
        if self.inactive_rules is not None:
            inactive = inactive_disease(readings, f.day, w.follow_up_days, self.inactive_rules, after=b.day)
        out["inactive_disease"] = inactive["value"] if inactive else None
        out["measures"] = cs.describe()
        if inactive is not None:
            out["inactive_detail"] = inactive
        out["endpoints"] = endpoint_changes(readings, self.settings.endpoints, self.study.endpoints, b.day, f.day, w)
        if self.study.respiratory:
            out["respiratory"] = endpoint_changes(readings, self.settings.endpoints, self.study.respiratory, b.day,
                                                  f.day, w)
        if self.study.safety:
            end = f.day + timedelta(days=w.follow_up_days)
            out["safety"] = safety_signals(record, self.catalog, readings, self.settings.safety, b.day, end)
        if self.course:
            out["visits"] = self.visits(readings, b.day, f.day, w)
        out["settings"] = {"tis_rules": self.rules.id, "population": self.study.population,
                           "baseline_window_days": w.baseline_days, "follow_up_window_days": w.follow_up_days}
        if problems:
            out["problems"] = problems
        return out

    def visits(self, readings: Any, baseline: date, follow_up: date, w: Windows) -> list[dict[str, Any]]:
        spec = self.study.course
        window = Windows(w.baseline_days, int(spec.get("window_days", 7)))
        if spec.get("rule") == "scheduled":
            days = scheduled_visits(baseline, int(spec["every_days"]), int(spec["until_days"]))
        else:
            clinical = {c for m in self.rules.measures if m.change != "relative-decrease" for c in m.concepts}
            days = recorded_visits(readings, clinical, baseline, follow_up + timedelta(days=w.follow_up_days))
        inactive = None
        if self.inactive_rules is not None:
            rules = self.inactive_rules

            def inactive(day: date) -> dict[str, Any]:
                return inactive_disease(readings, day, window.follow_up_days, rules, after=baseline)

        return visit_course(readings, self.rules, days, baseline, window, self.study.population,
                            endpoints=self.settings.endpoints, respiratory=self.study.respiratory, inactive=inactive)
