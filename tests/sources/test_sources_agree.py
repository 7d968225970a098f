"""The same data gives the same patient records from every source: NDJSON folder, FHIR server, Bundle file."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from fhir_adapter.client import FhirClient
from fhir_adapter.paths import sample_dir
from fhir_adapter.record.patient_record import PatientRecord
from fhir_adapter.sample.load import load_sample
from fhir_adapter.sources.bundle import BundleSource
from fhir_adapter.sources.ndjson import NdjsonSource
from fhir_adapter.sources.server import ServerSource

# A candidate, local codes and units, a contained Medication, not-data statuses, an IV pulse, a deceased patient
PATIENTS = ["mda5-ild-01", "mda5-ild-02-local", "bnd-i1-weight-lb-ok", "notdata-eie-wbc", "notdata-not-taken-rtx",
            "excl-e12-mp-pulse", "misc-deceased", "tofa-ukat-mm"]


def shape(record: PatientRecord) -> dict:
    """What a record holds, by reference (servers add their own meta, so compare ids, not bodies)."""
    return {
        "patient": record.reference,
        "resources": {t: sorted(r["id"] for r in rs) for t, rs in sorted(record.resources.items()) if rs},
        "set_aside": sorted((s.reference, s.reason) for s in record.set_aside),
        "medications": sorted(
            m["id"] for t in ("MedicationStatement", "MedicationRequest", "MedicationAdministration")
            for r in record.of(t) if (m := record.resolve(r.get("medicationReference"), within=r))),
    }


@pytest.fixture(scope="module")
def expected() -> dict[str, dict]:
    with NdjsonSource(sample_dir(), workers=2) as source:
        return {r.patient_id: shape(r) for r in source.records(PATIENTS)}


def test_sample_records_hold_what_the_scenarios_need(expected: dict[str, dict]) -> None:
    assert sorted(expected) == sorted(PATIENTS)
    assert [reason for _, reason in expected["notdata-eie-wbc"]["set_aside"]] == ["status entered-in-error"]
    assert [reason for _, reason in expected["notdata-not-taken-rtx"]["set_aside"]] == ["status not-taken"]
    assert "MedicationAdministration" in expected["excl-e12-mp-pulse"]["resources"]


@pytest.mark.server
def test_server_gives_the_same_records_as_the_files(fhir_base: str, expected: dict[str, dict]) -> None:
    with FhirClient(fhir_base) as client:
        load_sample(client)
    with ServerSource(fhir_base) as source:
        got = {r.patient_id: shape(r) for r in source.records(PATIENTS)}
    assert got == expected


def test_a_collection_bundle_gives_the_same_records_as_the_files(tmp_path: Path, expected: dict[str, dict]) -> None:
    entries = []
    for f in sorted(sample_dir().glob("*.ndjson")):
        for line in f.read_bytes().splitlines():
            resource = orjson.loads(line)
            entries.append({"fullUrl": f"urn:uuid:{resource['resourceType']}-{resource['id']}", "resource": resource})
    bundle = tmp_path / "sample-bundle.json"
    bundle.write_bytes(orjson.dumps({"resourceType": "Bundle", "type": "collection", "entry": entries}))
    with BundleSource(bundle) as source:
        got = {r.patient_id: shape(r) for r in source.records(PATIENTS)}
    assert got == expected
