"""Small FHIR builders for response tests: one patient's Observations and Conditions as plain dicts."""

from __future__ import annotations

from datetime import date
from typing import Any

from fhir_adapter.record.patient_record import PatientRecord

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
MEASURES = "http://fhir-adapter.org/fhir/CodeSystem/myositis-measures"
SNOMED = "http://snomed.info/sct"

LAB = {"ck": "2157-6", "aldolase": "1761-6", "ldh": "2532-0", "alt": "1742-6", "ast": "1920-8",
       "wbc": "26464-8", "lymphocytes": "26474-7", "ferritin": "2276-4", "fvc-pct": "19872-1",
       "dlco": "19911-7", "dlco-predicted": "19910-9", "dlco-pct": "98130-8", "cd19-abs": "8116-6",
       "cd19-pct": "8117-4", "pao2": "2703-7", "fio2": "3150-0", "spo2": "2708-6"}


class Builder:
    """Collects resources for one patient; ``record()`` gives the PatientRecord."""

    def __init__(self, pid: str = "p1") -> None:
        self.pid = pid
        self.observations: list[dict[str, Any]] = []
        self.conditions: list[dict[str, Any]] = []
        self.medications: list[dict[str, Any]] = []

    def obs(self, system: str, code: str, day: date | str, value: float | None, unit: str | None = None, *,
            high: float | None = None, high_unit: str | None = None, comparator: str | None = None) -> Builder:
        o: dict[str, Any] = {"resourceType": "Observation", "id": f"o{len(self.observations) + 1}",
                             "status": "final", "subject": {"reference": f"Patient/{self.pid}"},
                             "code": {"coding": [{"system": system, "code": code}]},
                             "effectiveDateTime": f"{day}T09:00:00+08:00"}
        if value is not None:
            q: dict[str, Any] = {"value": value}
            if unit is not None:
                q.update(unit=unit, system=UCUM, code=unit)
            if comparator:
                q["comparator"] = comparator
            o["valueQuantity"] = q
        if high is not None:
            hu = high_unit or unit
            high_q: dict[str, Any] = {"value": high}
            if hu:
                high_q.update(unit=hu, system=UCUM, code=hu)
            o["referenceRange"] = [{"high": high_q}]
        self.observations.append(o)
        return self

    def lab(self, name: str, day: date | str, value: float, unit: str, high: float | None = None) -> Builder:
        return self.obs(LOINC, LAB[name], day, value, unit, high=high)

    def score(self, code: str, day: date | str, value: float, unit: str | None = None,
              high: float | None = None) -> Builder:
        return self.obs(MEASURES, code, day, value, unit, high=high)

    def condition(self, code: str, onset: date | str, system: str = SNOMED) -> Builder:
        self.conditions.append({"resourceType": "Condition", "id": f"c{len(self.conditions) + 1}",
                                "subject": {"reference": f"Patient/{self.pid}"},
                                "code": {"coding": [{"system": system, "code": code}]},
                                "onsetDateTime": str(onset)})
        return self

    def drug(self, rxcui: str, start: date | str) -> Builder:
        self.medications.append({"resourceType": "MedicationStatement", "id": f"m{len(self.medications) + 1}",
                                 "status": "active", "subject": {"reference": f"Patient/{self.pid}"},
                                 "medicationCodeableConcept": {"coding": [
                                     {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": rxcui}]},
                                 "effectivePeriod": {"start": str(start)}})
        return self

    def record(self) -> PatientRecord:
        resources = {"Observation": self.observations, "Condition": self.conditions,
                     "MedicationStatement": self.medications}
        return PatientRecord(self.pid, {"resourceType": "Patient", "id": self.pid},
                             {k: v for k, v in resources.items() if v})


def core(b: Builder, day: date | str, *, phga: float | None = None, ptga: float | None = None,
         mmt: float | None = None, mmt_max: float | None = 80, haq: float | None = None,
         extra: float | None = None, vas_unit: str = "cm") -> Builder:
    """The clinical core set measures of one visit (None leaves one out)."""
    if phga is not None:
        b.score("phga-vas", day, phga, vas_unit)
    if ptga is not None:
        b.score("ptga-vas", day, ptga, vas_unit)
    if mmt is not None:
        b.score("mmt8", day, mmt, "{score}", high=mmt_max)
    if haq is not None:
        b.score("haq-di", day, haq, "{score}")
    if extra is not None:
        b.score("mdaat-extramuscular-vas", day, extra, vas_unit)
    return b
