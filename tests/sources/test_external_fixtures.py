"""Data from generators nobody here wrote (tests/fixtures/*/README.md says how it was made): every resource
is read into a record, set aside or skipped with a reason, and known codes arrive where criteria look."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fhir_adapter.record.patient_record import PatientRecord
from fhir_adapter.sources import open_source
from fhir_adapter.sources.base import Source
from fhir_adapter.sources.bundle import BundleSource

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
CAREBUNDLE = FIXTURES / "carebundle"
CLINOSIM = FIXTURES / "clinosim" / "fhir_r4"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


def accounted(src: Source) -> int:
    rep = src.report
    return sum(rep.read.values()) + sum(rep.set_aside.values()) + sum(rep.skipped.values())


def codes(resources: list[dict[str, Any]], element: str, system: str) -> set[str]:
    return {c["code"] for r in resources for c in (r.get(element) or {}).get("coding", ())
            if c.get("system") == system}


def bundle_entries() -> list[dict[str, Any]]:
    entries = []
    for f in sorted(CAREBUNDLE.glob("*.json")):
        bundle = json.loads(f.read_text())
        assert bundle["resourceType"] == "Bundle" and bundle["type"] == "transaction"
        entries.extend(bundle["entry"])
    return entries


def ndjson_resources() -> list[dict[str, Any]]:
    return [json.loads(line) for f in sorted(CLINOSIM.glob("*.ndjson")) for line in f.open() if line.strip()]


# -- carebundle: US Core transaction Bundles, urn:uuid everywhere, no ids --------------------------------------


@pytest.fixture(scope="module")
def carebundle() -> tuple[BundleSource, dict[str, PatientRecord]]:
    src = open_source(str(CAREBUNDLE))
    assert isinstance(src, BundleSource)
    return src, {r.patient_id: r for r in src.records()}


def test_carebundle_every_entry_is_accounted_for(carebundle: tuple[BundleSource, dict[str, PatientRecord]]) -> None:
    src, _ = carebundle
    entries = bundle_entries()
    assert len(entries) == 348
    assert accounted(src) == len(entries)
    assert src.report.skipped == {"Practitioner not used by any criterion": 8}
    assert src.report.read["Observation"] == 248


def test_carebundle_every_patient_gets_a_record(carebundle: tuple[BundleSource, dict[str, PatientRecord]]) -> None:
    _, records = carebundle
    patients = [e["fullUrl"].removeprefix("urn:uuid:") for e in bundle_entries()
                if e["resource"]["resourceType"] == "Patient"]
    assert len(patients) == 8
    assert sorted(records) == sorted(patients)


def test_carebundle_codes_and_urn_references(carebundle: tuple[BundleSource, dict[str, PatientRecord]]) -> None:
    _, records = carebundle
    requests = [m for r in records.values() for m in r.of("MedicationRequest")]
    conditions = [c for r in records.values() for c in r.of("Condition")]
    assert len(requests) == 18 and len(conditions) == 18
    assert {"314076", "979492", "310798"} <= codes(requests, "medicationCodeableConcept", RXNORM)
    assert {"I10", "E11.9", "N18.32"} <= codes(conditions, "code", ICD10CM)
    for record in records.values():
        for m in record.of("MedicationRequest"):  # urn:uuid subject and encounter resolve in the record
            assert record.resolve(m["subject"]) is record.patient
            assert record.resolve(m["encounter"]) in record.of("Encounter")
        for report in record.of("DiagnosticReport"):
            results = [record.resolve(ref) for ref in report["result"]]
            assert results and all(o in record.of("Observation") for o in results)


def test_carebundle_defects_are_read_as_written(carebundle: tuple[BundleSource, dict[str, PatientRecord]]) -> None:
    """The dirty bundle: 6 near-duplicates with fresh ids are separate Observations; the Observation whose
    status was removed and the ones with a valueString or a site-local code system are still read."""
    _, records = carebundle
    dirty = json.loads((CAREBUNDLE / "defects-type2_diabetes-43.json").read_text())["entry"]
    record = records[dirty[0]["fullUrl"].removeprefix("urn:uuid:")]
    assert len(record.of("Observation")) == 40
    ids = {o["id"] for o in record.of("Observation")}
    assert dirty[21]["fullUrl"].removeprefix("urn:uuid:") in ids and "status" not in dirty[21]["resource"]
    assert sum("valueString" in o for o in record.of("Observation")) == 5
    assert codes(record.of("Condition"), "code", "urn:oid:1.2.840.114350.1.13.0.1.7.2.696580")


# -- clinosim: Bulk Data NDJSON, relative references, 25 resource types -----------------------------------------


@pytest.fixture(scope="module")
def clinosim() -> tuple[Source, dict[str, PatientRecord]]:
    pytest.importorskip("fhir_adapter.sources.ndjson")
    src = open_source(str(CLINOSIM))
    return src, {r.patient_id: r for r in src.records()}


def test_clinosim_every_resource_is_accounted_for(clinosim: tuple[Source, dict[str, PatientRecord]]) -> None:
    src, records = clinosim
    resources = ndjson_resources()
    assert len(resources) == 1028
    assert accounted(src) == len(resources)
    assert sorted(records) == sorted(r["id"] for r in resources if r["resourceType"] == "Patient")
    clinical = {"Condition", "MedicationRequest", "MedicationAdministration", "Observation", "Encounter",
                "AllergyIntolerance", "DiagnosticReport", "Procedure"}
    for rtype in clinical:
        assert src.report.read[rtype] == sum(r["resourceType"] == rtype for r in resources), rtype


def test_clinosim_codes_land_where_criteria_look(clinosim: tuple[Source, dict[str, PatientRecord]]) -> None:
    _, records = clinosim
    copd = records["pt-bf0d2c068a08"]
    assert {"J44.9", "I10", "N10"} <= codes(copd.of("Condition"), "code", ICD10CM)
    assert {"83367", "161"} <= codes(copd.of("MedicationRequest"), "medicationCodeableConcept", RXNORM)
    assert "83367" in codes(copd.of("MedicationAdministration"), "medicationCodeableConcept", RXNORM)
    assert sum(len(r.of("MedicationRequest")) for r in records.values()) == 29
    assert all(r.holds("Condition") for r in records.values())
    for m in copd.of("MedicationRequest"):
        assert copd.resolve(m["subject"]) is copd.patient
        assert copd.resolve(m["encounter"]) in copd.of("Encounter")


def test_clinosim_as_a_bundle_gives_the_same_records(tmp_path: Path,
                                                     clinosim: tuple[Source, dict[str, PatientRecord]]) -> None:
    """The same resources in a collection Bundle: same records as from the NDJSON folder."""
    ndjson, from_ndjson = clinosim
    bundle = {"resourceType": "Bundle", "type": "collection",
              "entry": [{"fullUrl": f"http://example.org/fhir/{r['resourceType']}/{r['id']}", "resource": r}
                        for r in ndjson_resources()]}
    (tmp_path / "clinosim.json").write_text(json.dumps(bundle))
    src = BundleSource(tmp_path / "clinosim.json")
    from_bundle = {r.patient_id: r for r in src.records()}
    assert accounted(src) == 1028
    assert {p: r.summary() for p, r in from_bundle.items()} == {p: r.summary() for p, r in from_ndjson.items()}
    assert src.report.as_dict() == ndjson.report.as_dict()
