"""A resource a patient's search returns that cannot be read (a real server would not store it, so the
fault-injecting proxy serves it) is skipped, counted, and put on the patient's record: no "no such record"
conclusion is drawn about its type, and the result names the request it came from."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from fhir_adapter.cli.main import main
from fhir_adapter.client import FhirClient
from fhir_adapter.sources.check import MALFORMED
from fhir_adapter.sources.server import ServerSource
from tests.fault_proxy import Edit, FaultProxy

pytestmark = [pytest.mark.server, pytest.mark.usefixtures("one_search_per_type")]
SCREEN = ("screen", "--study", "NCT07377058", "--as-of", "2026-06-30")
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


@pytest.fixture
def patient(fhir_base: str, tag: str) -> dict[str, Any]:
    """A patient with two MedicationStatements (prednisone, methotrexate), neither of them rituximab."""
    pid = f"unread-{tag}"
    with FhirClient(fhir_base) as c:
        c.update({"resourceType": "Patient", "id": pid, "gender": "female", "birthDate": "1985-03-01"})
        for n, (code, name) in enumerate((("8640", "prednisone"), ("6851", "methotrexate"))):
            # "id" then "status": the proxy's edit below finds the second one by these bytes
            c.update({"resourceType": "MedicationStatement", "id": f"{pid}-ms{n}", "status": "active",
                      "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": "2026-06-01",
                      "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": code, "display": name}]}})
    return {"id": pid, "bad": f"{pid}-ms1"}


def spoiled(fhir_base: str, patient: dict[str, Any]) -> FaultProxy:
    """The real server, with the second MedicationStatement's status turned into a list in the patient's search."""
    return FaultProxy(fhir_base, edits=(Edit(f"/MedicationStatement?subject=Patient/{patient['id']}&",
                                             f'"id":"{patient["bad"]}","status":"active"'.encode(),
                                             f'"id":"{patient["bad"]}","status":["active"]'.encode()),))


def test_a_malformed_resource_is_on_the_record_and_counted(fhir_base: str, patient: dict[str, Any]) -> None:
    proxy = spoiled(fhir_base, patient)
    with proxy.running(), ServerSource(proxy.base) as source:
        (record,) = source.records([patient["id"]])
    assert proxy.edited  # the proxy did spoil it
    assert [r["id"] for r in record.of("MedicationStatement")] == [f"{patient['id']}-ms0"]
    (unread,) = record.unreadable
    assert unread.resource_type == "MedicationStatement"
    assert unread.where.startswith(f"GET {proxy.base}/MedicationStatement?subject=Patient/{patient['id']}&")
    assert "MedicationStatement.status is a list, not a string" in unread.reason
    assert source.report.skipped[MALFORMED] == 1
    assert record.summary()["unreadable"] == [unread.shown()]


def test_no_absence_conclusion_rests_on_a_search_with_a_malformed_resource(
        fhir_base: str, patient: dict[str, Any], capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    def e14_1(base: str) -> dict[str, Any]:
        assert main([*SCREEN, "--source", base, "--patient", patient["id"]]) == 0
        result = orjson.loads(capsysbinary.readouterr().out)
        return result["criteria"]["E14.1"]

    clean = e14_1(fhir_base)
    assert clean["result"] == "not-met" and "no rituximab among 2 " in clean["reason"]
    proxy = spoiled(fhir_base, patient)
    with proxy.running():
        got = e14_1(proxy.base)
    assert got["result"] == "unknown"
    assert "no rituximab among 1 readable" in got["reason"] and "1 could not be read" in got["reason"]
    request = (f"GET {proxy.base}/MedicationStatement?subject=Patient/{patient['id']}"
               "&_include=MedicationStatement:medication&_count=200 (page 1)")
    assert request in got["reason"] and request in got["to_resolve"]
