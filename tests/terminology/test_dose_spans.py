"""The glucocorticoid dose over a window as the spans over which it stays the same (I4 and E12 read these instead
of one dose per day). Arithmetic in comments."""

from __future__ import annotations

import random
from datetime import date, timedelta
from itertools import pairwise

from fhir_adapter.terminology.concept import Concept
from fhir_adapter.terminology.dosage import DailyDose
from fhir_adapter.terminology.exposure import (
    Exposure,
    current_glucocorticoid_dose,
    glucocorticoid_doses,
    glucocorticoid_spans,
)

PRED = Concept("prednisone", "prednisone", "drug", classes=("glucocorticoid",), prednisone_factor=1)
MP = Concept("methylprednisolone", "methylprednisolone", "drug", classes=("glucocorticoid",),
             prednisone_factor=1.25)
FIRST, LAST = date(2026, 6, 2), date(2026, 6, 30)


def taken(concept: Concept, source: str, start: date | None, end: date | None, mg: float | None,
          kind: str = "MedicationStatement", route: str | None = "oral") -> Exposure:
    return Exposure(concept, f"{kind}/{source}", "active", route, start, end, end is None, DailyDose(mg))


def test_a_taper_is_two_spans() -> None:
    """Prednisone 30 mg/day until 10 June, then 10 mg/day: at 50 kg, 0.6 then 0.2 mg/kg/day."""
    spans = glucocorticoid_spans([taken(PRED, "a", date(2026, 5, 1), date(2026, 6, 10), 30),
                                  taken(PRED, "b", date(2026, 6, 11), None, 10)], FIRST, LAST, 50)
    assert [(s.first, s.last, s.dose.peq_mg_day, s.dose.mg_per_kg_day) for s in spans] == [
        (FIRST, date(2026, 6, 10), 30, 0.6), (date(2026, 6, 11), LAST, 10, 0.2)]
    assert spans[0].dose.on == FIRST and spans[1].dose.sources == ("MedicationStatement/b",)
    assert spans[1].on(date(2026, 6, 20)).on == date(2026, 6, 20)  # the same dose, dated
    assert spans[1].on(date(2026, 6, 20)).peq_mg_day == 10


def test_a_pulse_inside_the_window_and_a_gap_after_it() -> None:
    """Methylprednisolone 500 mg IV on 12-14 June (x 1.25 = 625 mg/day prednisone-equivalent), nothing else:
    no dose before, the pulse, no dose after."""
    spans = glucocorticoid_spans([taken(MP, "p", date(2026, 6, 12), date(2026, 6, 14), 500,
                                        "MedicationAdministration", "intravenous")], FIRST, LAST)
    assert [(s.first, s.last, s.dose.peq_mg_day) for s in spans] == [
        (FIRST, date(2026, 6, 11), 0), (date(2026, 6, 12), date(2026, 6, 14), 625), (date(2026, 6, 15), LAST, 0)]


def test_no_span_for_an_empty_window_and_one_for_a_single_day() -> None:
    course = [taken(PRED, "a", date(2026, 5, 1), None, 20)]
    assert glucocorticoid_spans(course, LAST, FIRST) == []
    (only,) = glucocorticoid_spans(course, LAST, LAST)
    assert (only.first, only.last, only.dose.peq_mg_day) == (LAST, LAST, 20)


def test_spans_cover_the_window_and_give_each_day_its_dose() -> None:
    """Random courses (tapers, pulses, gaps, undated and open-ended, mixed resource types): the spans follow each
    other day after day from the first to the last, the dose is worked out only at a start or the day after an
    end, and every day of a span has the dose ``current_glucocorticoid_dose`` gives for that day."""
    rng = random.Random(11)
    for trial in range(200):
        exposures = []
        for i in range(rng.randint(0, 5)):
            start = None if rng.random() < 0.1 else FIRST + timedelta(days=rng.randint(-20, 40))
            end = None if rng.random() < 0.4 or start is None else start + timedelta(days=rng.randint(0, 20))
            exposures.append(taken(rng.choice([PRED, MP]), f"x{trial}-{i}", start, end,
                                   rng.choice([None, 5.0, 30.0, 500.0]),
                                   rng.choice(["MedicationStatement", "MedicationAdministration", "MedicationRequest"]),
                                   rng.choice(["oral", "intravenous", None])))
        spans = glucocorticoid_spans(exposures, FIRST, LAST, 60.0)
        assert spans[0].first == FIRST and spans[-1].last == LAST
        assert all(a.last + timedelta(days=1) == b.first for a, b in pairwise(spans))
        assert len(spans) <= 1 + 2 * len(exposures)
        by_day = glucocorticoid_doses(exposures, FIRST, LAST, 60.0)
        for span in spans:
            day = span.first
            while day <= span.last:
                assert span.on(day) == current_glucocorticoid_dose(exposures, day, 60.0) == by_day[day], (trial, day)
                day += timedelta(days=1)
