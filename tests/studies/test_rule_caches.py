"""What the rule layer works out once and reuses (classification per distinct codings and catalog, daily doses per
distinct dosage and strength, Observations made into facts per concept asked for) gives what working it out
every time gives. Arithmetic in the comments."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from fhir_adapter.record.patient_record import PatientRecord
from fhir_adapter.studies.evidence import Facts
from fhir_adapter.terminology.catalog import Catalog
from fhir_adapter.terminology.exposure import exposures_of
from tests.studies.helpers import LOCAL_LAB, LOINC, SITE, UCUM

S = date(2026, 6, 30)
FORMULARY = "http://hospital.example.org/CodeSystem/formulary"
ORAL = {"coding": [{"system": "http://snomed.info/sct", "code": "26643006"}]}


def ids(concepts: Any) -> list[str]:
    return [c.id for c in concepts]


def test_classification_is_kept_per_catalog() -> None:
    """A local CK code maps only under the site file that lists it, whichever catalog classified it first."""
    cc = {"coding": [{"system": LOCAL_LAB, "code": "CHEM-CK"}]}
    default, site = Catalog.load(), Catalog.load(SITE)
    for _ in range(2):
        assert ids(default.classify(cc)) == [] and ids(site.classify(cc)) == ["ck"]


def test_odd_codings_classify_as_they_always_did() -> None:
    """One coding whose code is not text cannot be read (an error, each time: nothing cached); among several
    codings it is passed over and the LOINC CK code (2157-6) still maps."""
    catalog = Catalog.load()
    for _ in range(2):
        with pytest.raises(AttributeError):
            catalog.classify({"coding": [{"system": LOINC, "code": 5}]})
        assert ids(catalog.classify({"coding": [{"system": LOINC, "code": 5}, {"system": LOINC, "code": "2157-6"}]})) \
            == ["ck"]
        assert catalog.classify({"coding": ["2157-6"]}) == ()
        assert catalog.classify({"coding": [{"system": {"not": "hashable"}, "code": "x"}, "y"]}) == ()


def observation(id_: str, system: str, code: str, value: float, when: str, unit: str | None = None) -> dict[str, Any]:
    q: dict[str, Any] = {"value": value} | ({"unit": unit, "system": UCUM, "code": unit} if unit else {})
    return {"resourceType": "Observation", "id": id_, "status": "final",
            "code": {"coding": [{"system": system, "code": code}]}, "effectiveDateTime": when, "valueQuantity": q}


def record(*resources: dict[str, Any]) -> PatientRecord:
    by_type: dict[str, list[dict[str, Any]]] = {}
    for r in resources:
        by_type.setdefault(r["resourceType"], []).append(r)
    return PatientRecord("p1", {"resourceType": "Patient", "id": "p1"}, by_type)


def test_observation_codes_and_their_site_units_are_kept_per_catalog() -> None:
    """CHEM-CK 350 with no unit: the sample site file gives U/L (CK 350 U/L); without it the result maps to
    nothing. Asked in either order."""
    rec = record(observation("ck1", LOCAL_LAB, "CHEM-CK", 350, "2026-06-20T08:00:00+08:00"))
    for catalogs in ((Catalog.load(), Catalog.load(SITE)), (Catalog.load(SITE), Catalog.load())):
        for catalog in catalogs:
            v, _ = Facts(rec, catalog, S, S).latest_value(["ck"])
            if catalog.site:
                assert v is not None and (v.value, v.converted.unit, v.fact.ref) == (350, "U/L", "Observation/ck1")
            else:
                assert v is None


def test_observations_of_a_concept_newest_first_one_fact_each() -> None:
    """Three weights (60, 61, 62 kg) written out of order, two on the same minute as a CK: newest first, each the
    same fact however often it is asked for; a concept with no result gives nothing."""
    rec = record(observation("w1", LOINC, "29463-7", 60, "2026-05-01"),
                 observation("w3", LOINC, "29463-7", 62, "2026-06-20T08:00:00+08:00", "kg"),
                 observation("ck", LOINC, "2157-6", 300, "2026-06-20T08:00:00+08:00", "U/L"),
                 observation("w2", LOINC, "29463-7", 61, "2026-06-01", "kg"))
    facts = Facts(rec, Catalog.load(), S, S)
    first = facts.observations(["body-weight"])
    assert [(f.ref, f.when) for f in first] == [("Observation/w3", date(2026, 6, 20)),
                                               ("Observation/w2", date(2026, 6, 1)),
                                               ("Observation/w1", date(2026, 5, 1))]
    assert all(a is b for a, b in zip(first, facts.observations(["body-weight"]), strict=True))
    assert [f.ref for f in facts.observations(["body-weight", "ck"], date(2026, 6, 1))] == [
        "Observation/w3", "Observation/ck", "Observation/w2"]  # the same day: by reference, as newest first sorts
    assert facts.observations(["ferritin"]) == [] and facts.undated(["body-weight", "ck"]) == []


def statement(id_: str, name: str, tablets: float) -> dict[str, Any]:
    return {"resourceType": "MedicationStatement", "id": id_, "status": "active",
            "medicationCodeableConcept": {"coding": [{"system": FORMULARY, "code": id_, "display": name}]},
            "effectivePeriod": {"start": "2026-05-01"},
            "dosage": [{"route": ORAL, "timing": {"code": {"coding": [{"code": "BID"}]}},
                        "doseAndRate": [{"doseQuantity": {"value": tablets, "unit": "tablet"}}]}]}


def test_the_same_dosage_of_two_strengths_gives_two_doses() -> None:
    """One tablet twice a day of prednisone 5 mg tablets is 10 mg/day, of 20 mg tablets 40 mg/day; 1.5 tablets of
    the 5 mg ones 15 mg/day. Read twice over, in both orders."""
    catalog = Catalog.load()
    rec = record()
    five, twenty = "prednisone 5 MG Oral Tablet", "prednisone 20 MG Oral Tablet"
    for _ in range(2):
        for name, tablets, want in ((five, 1, 10), (twenty, 1, 40), (five, 1.5, 15), (five, 1, 10)):
            (e,) = exposures_of(statement("s", name, tablets), rec, catalog).items
            assert (e.concept.id, e.daily_mg) == ("prednisone", want)
