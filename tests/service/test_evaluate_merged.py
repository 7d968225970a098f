"""The service evaluates a Patient merged into another (``Patient.link`` replaced-by) as the Patient that replaced
it: one person, one feed entry, under the surviving id, whichever of the two ids the engine asked for."""

from __future__ import annotations

from datetime import date

import pytest

from fhir_adapter.client import FhirClient
from fhir_adapter.service.evaluate import Evaluator
from fhir_adapter.service.settings import ServiceSettings
from fhir_adapter.service.store import Store

pytestmark = pytest.mark.server


def test_a_merged_patient_is_evaluated_and_recorded_as_its_survivor(fhir_base: str, store: Store, tag: str) -> None:
    new, old = f"{tag}-new", f"{tag}-old"
    with FhirClient(fhir_base) as client:
        client.update({"resourceType": "Patient", "id": new, "gender": "female", "birthDate": "1980-01-01"})
        client.update({"resourceType": "Patient", "id": old, "gender": "female", "birthDate": "1980-01-01",
                       "link": [{"other": {"reference": f"Patient/{new}"}, "type": "replaced-by"}]})
        client.create({"resourceType": "Condition", "subject": {"reference": f"Patient/{old}"},
                       "code": {"text": "dermatomyositis"}})
    evaluator = Evaluator(ServiceSettings(fhir_base=fhir_base, studies=["NCT07377058"]), store)
    try:
        asked_old = evaluator.evaluate_and_record("NCT07377058", "screening", old, as_of=date(2026, 6, 30))
        asked_new = evaluator.evaluate_and_record("NCT07377058", "screening", new, as_of=date(2026, 6, 30))
    finally:
        evaluator.close()
    assert asked_old is not None and asked_new is not None
    assert asked_old.patient == asked_new.patient == new
    assert asked_old.result["patient"] == f"Patient/{new}" and asked_old.result == asked_new.result
    assert asked_old.seq is not None and asked_new.seq is None  # the same result for the same person: no change
    assert [e.patient for e in store.feed(0, 10)] == [new]
