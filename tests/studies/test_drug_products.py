"""Drugs coded as products read as their ingredient (issue "Drug products → ingredients and strengths").

Hospitals send RxNorm clinical drugs (SCD), branded drugs (SBD), packs, or a Medication whose ingredient names
the substance, rather than the ingredient code. Screening date S is 2026-06-30; the woman weighs 58 kg.
Arithmetic is in the comments."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_adapter.record.patient_record import PatientRecord
from fhir_adapter.studies.definition import load_study
from fhir_adapter.studies.screen import screen
from fhir_adapter.terminology.catalog import Catalog
from tests.studies.helpers import RXNORM, SCT, UCUM, Rec, S, day, result

LOCAL = "http://hospital.example.org/CodeSystem/formulary"
ORAL = {"coding": [{"system": SCT, "code": "26643006"}]}


def template() -> Rec:
    return Rec().lab("29463-7", 58, "kg")


def statement(rec: Rec, medication: dict[str, Any], start: int, end: int | None = None,
              dosage: dict[str, Any] | None = None, **extra: Any) -> Rec:
    period = {"start": day(start)} | ({"end": day(end)} if end is not None else {})
    body = {"status": "completed" if end is not None else "active", "effectivePeriod": period, **medication,
            "dosage": [dosage or {"route": ORAL, "timing": {"code": {"coding": [{"code": "BID"}]}}}], **extra}
    return rec.add("MedicationStatement", body)


def coded(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    coding = {"system": system, "code": code} | ({"display": display} if display else {})
    return {"medicationCodeableConcept": {"coding": [coding]}}


def tablets(n: float, per_day: str = "BID", unit: str = "tablet") -> dict[str, Any]:
    return {"route": ORAL, "timing": {"code": {"coding": [{"code": per_day}]}},
            "doseAndRate": [{"doseQuantity": {"value": n, "unit": unit}}]}


# --- E14.2: a JAK inhibitor stopped 14 days before S, coded only as a product -------------------------------
@pytest.mark.parametrize(("medication", "label"), [
    (coded(RXNORM, "1357541"), "RxNorm SCD tofacitinib 5 MG Oral Tablet, code only"),
    (coded(RXNORM, "1357547"), "RxNorm SBD tofacitinib 5 MG Oral Tablet [Xeljanz], code only"),
    (coded(RXNORM, "2047241"), "RxNorm SCD baricitinib 2 MG Oral Tablet, code only"),
    (coded(RXNORM, "2196894"), "RxNorm SCD 24 HR upadacitinib 15 MG Extended Release Oral Tablet"),
])
def test_e14_2_met_for_a_jak_inhibitor_coded_as_a_product(medication: dict[str, Any], label: str) -> None:
    """E14.2: JAK inhibitors within 2 weeks prior to screening; last taken on S-14 (inside), S-15 (outside)."""
    inside = statement(template(), medication, -100, -14)
    assert result(inside.screen(), "E14.2") == "met", label
    outside = statement(template(), medication, -100, -15)
    assert result(outside.screen(), "E14.2") == "not-met", label


def test_e14_2_met_from_an_rxnorm_name_under_an_unknown_local_code() -> None:
    """A local formulary code nothing maps, whose display is an RxNorm normalized name: read from the name, and
    the result says so."""
    rec = statement(template(), coded(LOCAL, "XJ-5", "tofacitinib 5 MG Oral Tablet"), -100, -14)
    out = rec.screen()["criteria"]["E14.2"]
    assert out["result"] == "met"
    assert "read from the product name 'tofacitinib 5 MG Oral Tablet'" in out["reason"]


def test_e14_2_from_the_text_of_an_unknown_rxnorm_code() -> None:
    """An RxNorm code the catalog does not list (a new product) with the name in ``text``."""
    medication = {"medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "99999999"}],
                                                "text": "tofacitinib 10 MG Oral Tablet [Xeljanz]"}}
    assert result(statement(template(), medication, -100, -14).screen(), "E14.2") == "met"


@pytest.mark.parametrize("where", ["contained", "referenced"])
@pytest.mark.parametrize("ingredient", ["coded", "item-reference", "named"])
def test_e14_2_from_a_medication_whose_ingredient_names_the_substance(where: str, ingredient: str) -> None:
    """A Medication (contained in the statement, or a resource of its own) with a hospital product code
    nothing maps; its ingredient is tofacitinib: RxNorm IN 1357536 inline (itemCodeableConcept), an
    itemReference to a contained Medication coded 1357536, or the substance's name alone."""
    item: dict[str, Any]
    sub = {"resourceType": "Medication", "id": "sub",
           "code": {"coding": [{"system": RXNORM, "code": "1357536", "display": "tofacitinib"}]}}
    if ingredient == "item-reference":
        item = {"itemReference": {"reference": "#sub"}}
    elif ingredient == "named":
        item = {"itemCodeableConcept": {"text": "Tofacitinib citrate"}}
    else:
        item = {"itemCodeableConcept": {"coding": [{"system": RXNORM, "code": "1357536"}]}}
    strength = {"numerator": {"value": 5, "unit": "mg", "system": UCUM, "code": "mg"},
                "denominator": {"value": 1, "unit": "tablet"}}
    medication = {"resourceType": "Medication", "id": "xj",
                  "code": {"coding": [{"system": LOCAL, "code": "XJ-5", "display": "\u6258\u6cd5\u66ff\u5e03\u7247"}]},
                  "ingredient": [item | {"strength": strength}]}
    rec = template()
    if where == "contained":
        statement(rec, {"medicationReference": {"reference": "#xj"}}, -100, -14, contained=[medication, sub])
        record = rec.record()
    else:
        statement(rec, {"medicationReference": {"reference": "Medication/xj"}}, -100, -14)
        record = PatientRecord(rec.pid, rec.patient, rec.res,
                               shared={"Medication/xj": medication | {"contained": [sub]}})
    out = screen(record, load_study("NCT07377058"), Catalog.load(None), S)["criteria"]["E14.2"]
    assert out["result"] == "met", out
    if ingredient == "named":
        assert "Tofacitinib citrate" in out["reason"]


@pytest.mark.parametrize("display", [
    "Tofacitinib 5 mg tablets",          # free text, not RxNorm's units or dose form
    "tofacitinib 5mg bid",               # a sig
    "tofacitinib",                       # an ingredient name alone is not a product name
    "tofacitinib 5 MG",                  # a component without a dose form
    "tofacitinib 5 MG Oral Tablet, take one twice daily",
])
def test_a_display_that_is_not_an_rxnorm_name_is_not_read(display: str) -> None:
    """Text alone never makes E14.2 met: only RxNorm's grammar is read as a product."""
    out = statement(template(), coded(LOCAL, "XJ-5", display), -100, -14).screen()
    assert result(out, "E14.2") != "met"


# --- doses from strength x quantity: I4, E12, I5 ----------------------------------------------------------------
def test_i4_and_e12_dose_from_prednisone_5_mg_tablets() -> None:
    """prednisone 5 MG Oral Tablet (SCD 312617), 2 tablets twice daily: 2 x 5 mg x 2 = 20 mg/day;
    20 / 58 kg = 0.345 mg/kg/day: I4 met (< 1, course of 60 days), E12 not met (<= 2)."""
    rec = statement(template(), coded(RXNORM, "312617"), -60, dosage=tablets(2))
    out = rec.screen()
    assert result(out, "I4") == "met" and "20 mg/day" in out["criteria"]["I4"]["reason"]
    assert result(out, "E12") == "not-met" and "20 mg/day" in out["criteria"]["E12"]["reason"]


def test_e12_from_prednisone_tablets_named_only() -> None:
    """An unknown code whose display is "prednisone 20 MG Oral Tablet", 3 tablets twice daily:
    3 x 20 x 2 = 120 mg/day = 2.07 mg/kg/day at 58 kg: E12 met (> 2)."""
    rec = statement(template(), coded(LOCAL, "PRED20", "prednisone 20 MG Oral Tablet"), -60, dosage=tablets(3))
    out = rec.screen()["criteria"]["E12"]
    assert out["result"] == "met" and "120 mg/day" in out["reason"]


def test_a_concentration_with_a_tablet_dose_gives_no_mg() -> None:
    """prednisone 5 MG/ML Oral Solution (SCD 205301) dosed in tablets: no mg can be had (the strength is per
    mL); I4 is unknown with that reason, not a guess."""
    rec = statement(template(), coded(RXNORM, "205301"), -60, dosage=tablets(2))
    out = rec.screen()["criteria"]["I4"]
    assert out["result"] == "unknown" and "per 1 mL" in out["reason"]


def test_a_concentration_with_a_volume_dose() -> None:
    """prednisone 5 MG/ML Oral Solution, 2 mL twice daily: 2 mL x 5 mg/mL x 2 = 20 mg/day."""
    dosage = tablets(2, unit="mL") | {"doseAndRate": [{"doseQuantity": {"value": 2, "unit": "mL", "system": UCUM,
                                                                        "code": "mL"}}]}
    out = statement(template(), coded(RXNORM, "205301"), -60, dosage=dosage).screen()
    assert result(out, "I4") == "met" and "20 mg/day" in out["criteria"]["I4"]["reason"]


def test_i5_stable_tacrolimus_capsules() -> None:
    """tacrolimus 1 MG Oral Capsule (SCD 198377), 2 capsules twice daily for 90 days: 4 mg/day every day."""
    rec = statement(template(), coded(RXNORM, "198377"), -90, dosage=tablets(2, unit="capsule"))
    out = rec.screen()["criteria"]["I5"]
    assert out["result"] == "met" and "4 mg/day" in out["reason"]


def test_a_methylprednisolone_pack() -> None:
    """{21 (methylprednisolone 4 MG Oral Tablet) } Pack [Medrol] under a local code: 6 tablets once daily
    = 24 mg/day methylprednisolone = 30 mg/day prednisone-equivalent (x 1.25): E12 not met at 58 kg."""
    medication = coded(LOCAL, "MEDROL-DP", "{21 (methylprednisolone 4 MG Oral Tablet) } Pack [Medrol]")
    out = statement(template(), medication, -5, dosage=tablets(6, per_day="QD")).screen()["criteria"]["E12"]
    assert out["result"] == "not-met" and "30 mg/day" in out["reason"]
