"""Reference forms a source may use (FHIR R4 §2.3.0 "Literal references") resolve to ``Type/id``."""

from __future__ import annotations

import pytest

from fhir_adapter.record.patient_record import PatientRecord
from fhir_adapter.record.references import parse_reference


@pytest.mark.parametrize(("reference", "expected"), [
    ("Patient/123", "Patient/123"),
    ("Patient/123/_history/4", "Patient/123"),
    ("http://hospital.example/fhir/Patient/abc-1.2", "Patient/abc-1.2"),
    ("https://hospital.example/fhir/Observation/x/_history/2", "Observation/x"),
    ("#med1", None),                      # contained: resolved within the resource, not here
    ("urn:uuid:5b1c", None),              # unknown urn without the bundle's aliases
    ("patient/123", None),                # a type starts with a capital letter
    ("Patient/", None),
    ("", None),
])
def test_parse_reference(reference: str, expected: str | None) -> None:
    assert parse_reference(reference) == expected


def test_aliases_resolve_bundle_full_urls() -> None:
    aliases = {"urn:uuid:5b1c": "Patient/p1"}
    assert parse_reference("urn:uuid:5b1c", aliases) == "Patient/p1"


def test_record_resolves_own_shared_contained_and_aliased_resources() -> None:
    statement = {"resourceType": "MedicationStatement", "id": "ms1",
                 "contained": [{"resourceType": "Medication", "id": "inner"}],
                 "medicationReference": {"reference": "#inner"}}
    record = PatientRecord(
        "p1", {"resourceType": "Patient", "id": "p1"},
        resources={"MedicationStatement": [statement]},
        shared={"Medication/m1": {"resourceType": "Medication", "id": "m1"}},
        aliases={"urn:uuid:aa": "Medication/m1"})
    assert record.resolve({"reference": "#inner"}, within=statement)["id"] == "inner"
    assert record.resolve({"reference": "#inner"}) is None          # contained only within its resource
    assert record.resolve("Medication/m1")["id"] == "m1"
    assert record.resolve({"reference": "urn:uuid:aa"})["id"] == "m1"
    assert record.resolve("MedicationStatement/ms1") is statement
    assert record.resolve("http://elsewhere/fhir/Patient/p1")["id"] == "p1"
    assert record.resolve({"display": "no reference"}) is None
    assert record.resolve("Observation/missing") is None
    assert record.holds("MedicationStatement") and not record.holds("Condition")
