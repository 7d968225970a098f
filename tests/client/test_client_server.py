"""FhirClient against the real FHIR server (SEKMET): paging, read, writes, bundles, capabilities."""

from __future__ import annotations

import logging

import pytest

from fhir_adapter.client import FhirClient, ResourceNotFound
from fhir_adapter.errors import FhirError

pytestmark = pytest.mark.server

SYSTEM = "urn:fhir-adapter:test"


@pytest.fixture
def client(fhir_base: str) -> FhirClient:
    with FhirClient(fhir_base, strict=True) as c:
        yield c


def observation(tag: str, i: int) -> dict:
    return {
        "resourceType": "Observation",
        "status": "final",
        "identifier": [{"system": SYSTEM, "value": f"{tag}-obs-{i}"}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "2160-0"}], "text": tag},
        "valueQuantity": {"value": i, "unit": "mg/dL"},
        "meta": {"tag": [{"system": SYSTEM, "code": tag}]},
    }


def test_capabilities(client: FhirClient) -> None:
    caps = client.capabilities
    assert caps.fhir_version == "4.0.1"
    assert {"Patient", "Observation", "Condition"} <= caps.resource_types
    assert client.supports_search("Observation", "subject")
    assert client.supports_search("Observation", "code:text")  # checked by the base name
    assert client.supports_search("Observation", "_count")
    assert not client.supports_search("AllergyIntolerance", "subject")
    assert not client.supports_search("NoSuchType", "_id")
    assert caps.supports_operation("$export")
    assert client.first_supported("AllergyIntolerance", ["subject", "patient"]) == "patient"
    assert client.capabilities is caps  # read once


def test_search_pages_through_more_than_two_pages(client: FhirClient, tag: str) -> None:
    ids = {client.create(observation(tag, i))["id"] for i in range(7)}
    pages = list(client.search_pages("Observation", {"_tag": f"{SYSTEM}|{tag}"}, count=2))
    assert len(pages) == 4
    assert [p.number for p in pages] == [1, 2, 3, 4]
    assert "_count=2" in pages[0].request and pages[1].where.endswith("(page 2)")
    found = [r["id"] for p in pages for r in p.resources()]
    assert sorted(found) == sorted(ids)  # every resource once, none twice
    assert {r["id"] for r in client.search("Observation", f"_tag={SYSTEM}|{tag}", count=3)} == ids


def test_strict_handling_makes_unknown_parameter_an_error(client: FhirClient, fhir_base: str,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(FhirError) as err:
        list(client.search("Patient", {"no-such-param": "x"}))
    assert err.value.status == 400
    assert "Unknown search parameter" in err.value.outcome
    lenient = FhirClient(fhir_base)  # the lenient server ignores it and says so in an outcome entry
    with caplog.at_level(logging.WARNING, logger="fhir_adapter.client"):
        next(lenient.search("Patient", {"no-such-param": "x", "_count": 1}), None)
    assert any("Unknown search parameter" in r.getMessage() for r in caplog.records)


def test_read_and_not_found(client: FhirClient, tag: str) -> None:
    created = client.create({"resourceType": "Patient", "identifier": [{"system": SYSTEM, "value": tag}]})
    assert created["id"] and created["meta"]["versionId"] == "1"
    assert client.read("Patient", created["id"])["identifier"][0]["value"] == tag
    with pytest.raises(ResourceNotFound) as err:
        client.read("Patient", f"missing-{tag}")
    assert err.value.status == 404
    assert f"Patient/missing-{tag}" in err.value.request


def test_update(client: FhirClient, tag: str) -> None:
    created = client.create({"resourceType": "Patient", "gender": "female"})
    updated = client.update({**created, "gender": "male"})
    assert updated["gender"] == "male" and updated["meta"]["versionId"] == "2"


def test_conditional_create_twice_stores_one(client: FhirClient, tag: str) -> None:
    patient = {"resourceType": "Patient", "identifier": [{"system": SYSTEM, "value": tag}]}
    first, created = client.create_if_none_exist(patient, {"identifier": f"{SYSTEM}|{tag}"})
    assert created
    second, created_again = client.create_if_none_exist(patient, f"identifier={SYSTEM}|{tag}")
    assert not created_again
    assert second["id"] == first["id"]
    assert [p["id"] for p in client.search("Patient", {"identifier": f"{SYSTEM}|{tag}"})] == [first["id"]]


def test_conditional_update_twice(client: FhirClient, tag: str) -> None:
    query = {"identifier": f"{SYSTEM}|{tag}"}
    subject = {"resourceType": "Patient", "identifier": [{"system": SYSTEM, "value": tag}], "gender": "female"}
    first, created = client.conditional_update(subject, query)
    assert created
    second, created_again = client.conditional_update({**subject, "gender": "other"}, query)
    assert not created_again
    assert second["id"] == first["id"] and second["gender"] == "other"
    assert len(list(client.search("Patient", query))) == 1


def test_transaction_is_atomic(client: FhirClient, tag: str) -> None:
    good = {"fullUrl": "urn:uuid:11111111-1111-4111-8111-111111111111",
            "resource": {"resourceType": "Patient", "identifier": [{"system": SYSTEM, "value": tag}]},
            "request": {"method": "POST", "url": "Patient"}}
    obs = {"resource": {**observation(tag, 1), "subject": {"reference": good["fullUrl"]}},
           "request": {"method": "POST", "url": "Observation"}}
    result = client.transaction({"resourceType": "Bundle", "type": "transaction", "entry": [good, obs]})
    assert result["type"] == "transaction-response"
    assert [e["response"]["status"][:3] for e in result["entry"]] == ["201", "201"]
    patient_id = client.search("Patient", {"identifier": f"{SYSTEM}|{tag}"}).__next__()["id"]
    stored = list(client.search("Observation", {"identifier": f"{SYSTEM}|{tag}-obs-1"}))
    assert stored[0]["subject"]["reference"] == f"Patient/{patient_id}"  # urn:uuid rewritten

    bad_tag = tag + "b"
    good["resource"]["identifier"][0]["value"] = bad_tag
    bad = {"resource": {"resourceType": "Observation", "status": "final", "bogus": 1},
           "request": {"method": "POST", "url": "Observation"}}
    with pytest.raises(FhirError) as err:
        client.transaction({"resourceType": "Bundle", "type": "transaction", "entry": [good, bad]})
    assert err.value.status == 400
    assert "Observation.code" in err.value.outcome and "rolled back" in err.value.outcome
    assert "rolled back" in str(err.value)
    assert list(client.search("Patient", {"identifier": f"{SYSTEM}|{bad_tag}"})) == []  # nothing kept


def test_batch_entries_succeed_or_fail_alone(client: FhirClient, tag: str,
                                             caplog: pytest.LogCaptureFixture) -> None:
    entries = [
        {"resource": {"resourceType": "Patient", "identifier": [{"system": SYSTEM, "value": tag}]},
         "request": {"method": "POST", "url": "Patient"}},
        {"request": {"method": "GET", "url": f"Patient/missing-{tag}"}},
    ]
    with caplog.at_level(logging.WARNING, logger="fhir_adapter.client"):
        result = client.batch({"resourceType": "Bundle", "type": "batch", "entry": entries})
    assert result["type"] == "batch-response"
    statuses = [e["response"]["status"][:3] for e in result["entry"]]
    assert statuses == ["201", "404"]
    assert len(list(client.search("Patient", {"identifier": f"{SYSTEM}|{tag}"}))) == 1
    assert any("batch entry 1 failed: 404" in r.getMessage() for r in caplog.records)


def test_bundle_type_is_checked(client: FhirClient) -> None:
    with pytest.raises(ValueError):
        client.transaction({"resourceType": "Bundle", "type": "batch", "entry": []})


def test_invalid_resource_gives_outcome_text(client: FhirClient) -> None:
    with pytest.raises(FhirError) as err:
        client.create({"resourceType": "Observation", "status": "final"})
    assert err.value.status == 400
    assert "Observation.code" in err.value.outcome


def test_post_to_closed_port_is_retried_because_it_never_left(tag: str) -> None:
    from fhir_adapter.client import RetryPolicy

    waits: list[float] = []
    client = FhirClient("http://127.0.0.1:9/fhir", retry=RetryPolicy(max_attempts=3, sleep=waits.append))
    with pytest.raises(FhirError) as err:
        client.create({"resourceType": "Patient"})
    assert len(waits) == 2  # connection refused: the POST certainly did not reach a server
    assert err.value.status is None and "cannot connect" in str(err.value)


def test_smart_configuration_discovery(fhir_base: str) -> None:
    from fhir_adapter.client import smart_configuration

    config = smart_configuration(fhir_base)
    assert config["token_endpoint"].endswith("/auth/token")
    assert "client_credentials" in config["grant_types_supported"]
