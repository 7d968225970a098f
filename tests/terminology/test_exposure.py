"""Drug exposures from a record, and the prednisone-equivalent dose (clinical.md §4.7). Arithmetic in comments."""

from __future__ import annotations

import random
from datetime import date, timedelta

import pytest

from fhir_adapter.record.patient_record import PatientRecord
from fhir_adapter.terminology.catalog import Catalog
from fhir_adapter.terminology.concept import Concept
from fhir_adapter.terminology.dosage import DailyDose
from fhir_adapter.terminology.exposure import (
    Exposure,
    current_glucocorticoid_dose,
    exposures_of,
    glucocorticoid_doses,
    mg_per_kg_day,
    read_exposures,
)
from fhir_adapter.terminology.units import UCUM

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ATC = "http://www.whocc.no/atc"
SCT = "http://snomed.info/sct"
ORAL = {"coding": [{"system": SCT, "code": "26643006"}]}
IV = {"coding": [{"system": SCT, "code": "47625008"}]}


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.load()


def rx(code: str, display: str = "") -> dict:
    return {"coding": [{"system": RXNORM, "code": code, "display": display}], "text": display}


def mg(value: float, unit: str = "mg") -> dict:
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


def record(*resources: dict, shared: dict | None = None) -> PatientRecord:
    by_type: dict[str, list[dict]] = {}
    for r in resources:
        by_type.setdefault(r["resourceType"], []).append(r)
    return PatientRecord("p1", {"resourceType": "Patient", "id": "p1"}, by_type, shared=shared or {})


def statement(id_: str, medication: dict, dosage: list[dict], start: str = "2026-03-01", end: str | None = None,
              status: str = "active", **extra) -> dict:
    period = {"start": start} | ({"end": end} if end else {})
    return {"resourceType": "MedicationStatement", "id": id_, "status": status, **medication,
            "subject": {"reference": "Patient/p1"}, "effectivePeriod": period, "dosage": dosage, **extra}


SMX_TMP_TABLET = {
    "resourceType": "Medication",
    "id": "smx-tmp",
    "code": rx("198334", "sulfamethoxazole 400 MG / trimethoprim 80 MG Oral Tablet"),
    "ingredient": [
        {"itemCodeableConcept": rx("10180", "sulfamethoxazole"), "isActive": True,
         "strength": {"numerator": mg(400), "denominator": {"value": 1, "unit": "tablet", "code": "TAB"}}},
        {"itemCodeableConcept": rx("10829", "trimethoprim"), "isActive": True,
         "strength": {"numerator": mg(80), "denominator": {"value": 1, "unit": "tablet", "code": "TAB"}}},
    ],
}
ONE_TABLET_DAILY = [{"route": ORAL, "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
                     "doseAndRate": [{"doseQuantity": {"value": 1, "unit": "tablet", "code": "{tbl}"}}]}]


def test_prednisone_statement(catalog: Catalog) -> None:
    # prednisone 10 mg BID by mouth: 10 x 2 = 20 mg/day; PEQ 20 x 1 = 20 mg/day
    ms = statement("ms1", {"medicationCodeableConcept": rx("8640", "prednisone")},
                   [{"route": ORAL, "timing": {"code": {"coding": [{"code": "BID"}]}},
                     "doseAndRate": [{"doseQuantity": mg(10)}]}])
    (e,) = exposures_of(ms, record(ms), catalog).items
    assert (e.concept.id, e.route, e.start, e.end, e.ongoing, e.daily_mg) == \
        ("prednisone", "oral", date(2026, 3, 1), None, True, 20)
    assert e.source == "MedicationStatement/ms1" and "glucocorticoid" in e.classes
    assert e.active_on(date(2026, 4, 1)) is True and e.active_on(date(2026, 2, 1)) is False


def test_tmp_smx_one_tablet_daily_from_a_referenced_medication(catalog: Catalog) -> None:
    # 1 tablet daily of SMX 400 mg / TMP 80 mg: SMX 1 x 400 = 400 mg/day, TMP 1 x 80 = 80 mg/day
    ms = statement("ms2", {"medicationReference": {"reference": "Medication/smx-tmp"}}, ONE_TABLET_DAILY)
    rec = record(ms, shared={"Medication/smx-tmp": SMX_TMP_TABLET})
    by_id = {e.concept.id: e for e in exposures_of(ms, rec, catalog).items}
    assert by_id["sulfamethoxazole"].daily_mg == 400
    assert by_id["trimethoprim"].daily_mg == 80
    # the product concept (class tmp-smx, for I6) is there too; its mg are those of each ingredient
    combo = by_id["tmp-smx"]
    assert combo.daily_mg is None and "combination product" in combo.dose.reason
    assert "tmp-smx" in combo.classes


def test_one_tablet_with_strength_from_a_contained_medication(catalog: Catalog) -> None:
    # contained Medication: prednisone 5 mg tablet; 2 tablets daily = 2 x 5 = 10 mg/day
    contained = {"resourceType": "Medication", "id": "m1", "code": rx("8640", "prednisone"),
                 "ingredient": [{"itemCodeableConcept": rx("8640", "prednisone"),
                                 "strength": {"numerator": mg(5), "denominator": {"value": 1, "code": "{tbl}"}}}]}
    ms = statement("ms3", {"medicationReference": {"reference": "#m1"}},
                   [{"timing": {"code": {"coding": [{"code": "QD"}]}},
                     "doseAndRate": [{"doseQuantity": {"value": 2, "unit": "tablet"}}]}], contained=[contained])
    (e,) = exposures_of(ms, record(ms), catalog).items
    assert e.daily_mg == 10


def test_tablet_strength_from_the_product_name(catalog: Catalog) -> None:
    # no Medication resource: "prednisone 5 MG Oral Tablet" gives 5 mg per tablet; 1 tablet TID = 15 mg/day
    ms = statement("ms4", {"medicationCodeableConcept": {
        "coding": [{"system": RXNORM, "code": "8640"}], "text": "prednisone 5 MG Oral Tablet"}},
        [{"timing": {"code": {"coding": [{"code": "TID"}]}},
          "doseAndRate": [{"doseQuantity": {"value": 1, "unit": "TAB"}}]}])
    (e,) = exposures_of(ms, record(ms), catalog).items
    assert e.daily_mg == 15


def test_text_only_dosage_is_flagged(catalog: Catalog) -> None:
    # "泼尼松 30mg qd" = 30 x 1 = 30 mg/day, from dosage text
    ms = statement("ms5", {"medicationCodeableConcept": rx("8640", "prednisone")},
                   [{"text": "\u6cfc\u5c3c\u677e 30mg qd"}])
    (e,) = exposures_of(ms, record(ms), catalog).items
    assert e.daily_mg == 30 and e.dose.from_text


def test_iv_methylprednisolone_pulse(catalog: Catalog) -> None:
    # MedicationAdministration, methylprednisolone 500 mg IV on 2026-05-10:
    # PEQ 500 x 1.25 = 625 mg/day; at 60 kg 625 / 60 = 10.42 mg/kg/day (> 2: PROMIS E12)
    ma = {"resourceType": "MedicationAdministration", "id": "ma1", "status": "completed",
          "medicationCodeableConcept": rx("6902", "methylprednisolone"), "subject": {"reference": "Patient/p1"},
          "effectiveDateTime": "2026-05-10T09:30:00+08:00", "dosage": {"route": IV, "dose": mg(500)}}
    exposures = read_exposures(record(ma), catalog)
    (e,) = exposures.items
    assert (e.route, e.start, e.end, e.daily_mg) == ("intravenous", date(2026, 5, 10), date(2026, 5, 10), 500)
    dose = current_glucocorticoid_dose(exposures.items, date(2026, 5, 10), weight_kg=60)
    assert dose.peq_mg_day == pytest.approx(625)
    assert dose.mg_per_kg_day == pytest.approx(10.4167, abs=1e-4)
    assert dose.sources == ("MedicationAdministration/ma1",) and dose.complete
    assert current_glucocorticoid_dose(exposures.items, date(2026, 5, 11), 60).peq_mg_day == 0


def test_dexamethasone_peq(catalog: Catalog) -> None:
    # dexamethasone 4.5 mg once daily: PEQ 4.5 x 6.67 = 30.015 mg/day; at 50 kg 0.6003 mg/kg/day
    ms = statement("ms6", {"medicationCodeableConcept": rx("3264", "dexamethasone")},
                   [{"timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
                     "doseAndRate": [{"doseQuantity": mg(4.5)}]}])
    dose = current_glucocorticoid_dose(read_exposures(record(ms), catalog).items, date(2026, 3, 15), 50)
    assert dose.peq_mg_day == pytest.approx(30.015)
    assert dose.mg_per_kg_day == pytest.approx(0.6003)


def test_concurrent_glucocorticoids_add_up_and_orders_do_not_double_count(catalog: Catalog) -> None:
    # prednisone 20 mg/day (statement) + dexamethasone 1.5 mg/day (statement): 20 x 1 + 1.5 x 6.67 = 30.005
    # the prednisone order for the same drug and days is superseded by the statement, not added
    pred = statement("ms7", {"medicationCodeableConcept": rx("8640")},
                     [{"timing": {"code": {"coding": [{"code": "QD"}]}}, "doseAndRate": [{"doseQuantity": mg(20)}]}])
    dex = statement("ms8", {"medicationCodeableConcept": rx("3264")},
                    [{"timing": {"code": {"coding": [{"code": "QD"}]}}, "doseAndRate": [{"doseQuantity": mg(1.5)}]}])
    order = {"resourceType": "MedicationRequest", "id": "mr1", "status": "active", "intent": "order",
             "medicationCodeableConcept": rx("8640"), "authoredOn": "2026-03-01",
             "dosageInstruction": [{"timing": {"code": {"coding": [{"code": "QD"}]}},
                                    "doseAndRate": [{"doseQuantity": mg(20)}]}]}
    dose = current_glucocorticoid_dose(read_exposures(record(pred, dex, order), catalog).items, date(2026, 3, 20))
    assert dose.peq_mg_day == pytest.approx(30.005)
    assert set(dose.sources) == {"MedicationStatement/ms7", "MedicationStatement/ms8"}
    assert dose.superseded == ("MedicationRequest/mr1",)


def test_taper_steps_with_bounds(catalog: Catalog) -> None:
    # order: 40 mg/day 1-14 March, then 30 mg/day from 15 March (dosage sequence 1 and 2 with boundsPeriod)
    def step(seq: int, start: str, end: str | None, dose: float) -> dict:
        bounds = {"start": start} | ({"end": end} if end else {})
        return {"sequence": seq, "timing": {"repeat": {"boundsPeriod": bounds, "frequency": 1, "period": 1,
                                                        "periodUnit": "d"}},
                "doseAndRate": [{"doseQuantity": mg(dose)}]}
    mr = {"resourceType": "MedicationRequest", "id": "mr2", "status": "active", "intent": "order",
          "medicationCodeableConcept": rx("8640"), "authoredOn": "2026-03-01",
          "dosageInstruction": [step(1, "2026-03-01", "2026-03-14", 40), step(2, "2026-03-15", None, 30)]}
    items = read_exposures(record(mr), catalog).items
    assert current_glucocorticoid_dose(items, date(2026, 3, 10)).peq_mg_day == 40
    assert current_glucocorticoid_dose(items, date(2026, 3, 20)).peq_mg_day == 30


def test_weekly_methotrexate_exposure(catalog: Catalog) -> None:
    # methotrexate 15 mg once a week: 15 / 7 = 2.142857 mg/day averaged; 15 mg/week kept
    ms = statement("ms9", {"medicationCodeableConcept": rx("6851", "methotrexate")},
                   [{"timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "wk"}},
                     "doseAndRate": [{"doseQuantity": mg(15)}]}])
    (e,) = exposures_of(ms, record(ms), catalog).items
    assert e.daily_mg == pytest.approx(15 / 7) and e.dose.mg_per_week == 15
    assert "other-immunosuppressant" in e.classes


def test_missing_dose_gives_a_reason_and_an_incomplete_total(catalog: Catalog) -> None:
    ms = statement("ms10", {"medicationCodeableConcept": rx("8640")}, [{"text": "as directed"}])
    items = read_exposures(record(ms), catalog).items
    assert items[0].daily_mg is None and "as directed" in items[0].dose.reason
    dose = current_glucocorticoid_dose(items, date(2026, 3, 2), 60)
    assert not dose.complete and dose.peq_mg_day == 0
    assert dose.missing[0][0] == "MedicationStatement/ms10"


def test_glucocorticoid_without_a_factor() -> None:
    # budesonide has no prednisone-equivalent factor (clinical.md §4.7): left out with the reason
    bud = Concept("budesonide", "budesonide", "drug", classes=("glucocorticoid",))
    e = Exposure(bud, "MedicationStatement/b", "active", "oral", date(2026, 1, 1), None, True, DailyDose(9.0))
    dose = current_glucocorticoid_dose([e], date(2026, 2, 1))
    assert not dose.complete and "no prednisone-equivalent factor for budesonide" in dose.missing[0][1]


def test_topical_and_undated_exposures_are_set_aside() -> None:
    pred = Concept("prednisone", "prednisone", "drug", classes=("glucocorticoid",), prednisone_factor=1)
    topical = Exposure(pred, "MedicationStatement/t", "active", "topical", date(2026, 1, 1), None, True,
                       DailyDose(5.0))
    undated = Exposure(pred, "MedicationStatement/u", "active", "oral", None, None, True, DailyDose(5.0))
    not_taken = Exposure(pred, "MedicationStatement/n", "not-taken", "oral", date(2026, 1, 1), None, False,
                         DailyDose(5.0))
    dose = current_glucocorticoid_dose([topical, undated, not_taken], date(2026, 2, 1))
    assert dose.peq_mg_day == 0
    assert dose.not_systemic == ("MedicationStatement/t",) and dose.uncertain == ("MedicationStatement/u",)


def test_unresolvable_and_unmapped_medications_are_reported(catalog: Catalog) -> None:
    ms = statement("ms11", {"medicationReference": {"reference": "Medication/absent"}}, [])
    other = statement("ms12", {"medicationCodeableConcept": {"text": "omeprazole 20 mg capsule"}}, [])
    found = read_exposures(record(ms, other), catalog)
    assert found.items == ()
    assert found.unresolved == (
        ("MedicationStatement/ms11", "medication 'Medication/absent' not in the source"),
        ("MedicationStatement/ms12", "medication 'omeprazole 20 mg capsule' not in the catalog"),
    )


def test_mg_per_kg_day() -> None:
    # 48 mg/day / 60 kg = 0.8 mg/kg/day
    assert mg_per_kg_day(48, 60) == pytest.approx(0.8)
    assert mg_per_kg_day(48, None) is None and mg_per_kg_day(48, 0) is None


def test_doses_over_a_window_equal_the_dose_computed_day_by_day() -> None:
    """glucocorticoid_doses works the dose out only where it can change; on every day it must equal
    current_glucocorticoid_dose for that day: tapers, pulses, gaps, undated and open-ended courses, mixed."""
    pred = Concept("prednisone", "prednisone", "drug", classes=("glucocorticoid",), prednisone_factor=1)
    mp = Concept("methylprednisolone", "methylprednisolone", "drug", classes=("glucocorticoid",),
                 prednisone_factor=1.25)
    first, last = date(2026, 6, 2), date(2026, 6, 30)
    rng = random.Random(7)
    for trial in range(200):
        exposures = []
        for i in range(rng.randint(0, 5)):
            start = None if rng.random() < 0.1 else first + timedelta(days=rng.randint(-20, 40))
            end = None if rng.random() < 0.4 or start is None else start + timedelta(days=rng.randint(0, 20))
            kind = rng.choice(["MedicationStatement", "MedicationAdministration", "MedicationRequest"])
            exposures.append(Exposure(rng.choice([pred, mp]), f"{kind}/x{trial}-{i}", "active",
                                      rng.choice(["oral", "intravenous", None]), start, end,
                                      end is None and rng.random() < 0.7,
                                      DailyDose(rng.choice([None, 5.0, 30.0, 500.0]))))
        doses = glucocorticoid_doses(exposures, first, last, 60.0)
        assert sorted(doses) == [first + timedelta(days=i) for i in range((last - first).days + 1)]
        for day, dose in doses.items():
            assert dose == current_glucocorticoid_dose(exposures, day, 60.0), (trial, day)
