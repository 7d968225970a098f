"""Small hand-made patient records for criterion tests, and the screening call."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any

from fhir_adapter.record.patient_record import PatientRecord
from fhir_adapter.studies.definition import load_study
from fhir_adapter.studies.screen import screen
from fhir_adapter.terminology.catalog import Catalog

S = date(2026, 6, 30)
LOINC = "http://loinc.org"
SCT = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
UCUM = "http://unitsofmeasure.org"
SITE = Path(__file__).resolve().parents[2] / "fhir_adapter" / "sample" / "site-mappings.json"
LOCAL_LAB = "http://hospital.example.cn/CodeSystem/lab"


def day(offset: int) -> str:
    return (S + timedelta(days=offset)).isoformat()


class Rec:
    """Build a record: ``Rec().lab(...).cond(...).drug(...)`` then ``.screen()``."""

    def __init__(self, birth: str = "1990-08-29", gender: str = "female", pid: str = "p1", **patient: Any):
        self.pid = pid
        self.patient = {"resourceType": "Patient", "id": pid, "birthDate": birth, "gender": gender, **patient}
        self.res: dict[str, list[dict[str, Any]]] = {}
        self.n = 0

    def add(self, rtype: str, body: dict[str, Any]) -> Rec:
        self.n += 1
        self.res.setdefault(rtype, []).append({"resourceType": rtype, "id": f"{rtype[:3].lower()}{self.n}",
                                               "subject": {"reference": f"Patient/{self.pid}"}, **body})
        return self

    def lab(self, code: str, value: float, unit: str | None, offset: int = -3, system: str = LOINC,
            ucum: bool = True, **extra: Any) -> Rec:
        q: dict[str, Any] = {"value": value}
        if unit:
            q["unit"] = unit
            if ucum:
                q.update(system=UCUM, code=unit)
        return self.add("Observation", {"status": "final", "code": {"coding": [{"system": system, "code": code}]},
                                        "effectiveDateTime": day(offset), "valueQuantity": q, **extra})

    def qual(self, code: str, positive: bool | None, offset: int = -10, system: str = LOINC) -> Rec:
        value = {"coding": [{"system": SCT, "code": "10828004" if positive else "260385009"}]} \
            if positive is not None else {"text": "indeterminate"}
        return self.add("Observation", {"status": "final", "code": {"coding": [{"system": system, "code": code}]},
                                        "effectiveDateTime": day(offset), "valueCodeableConcept": value})

    def cond(self, code: str, offset: int = -100, system: str = ICD10CM, **extra: Any) -> Rec:
        return self.add("Condition", {"code": {"coding": [{"system": system, "code": code}], "text": code},
                                      "onsetDateTime": day(offset), **extra})

    def drug(self, rxnorm: str, start: int, end: int | None = None, mg: float | None = None, per_day: int = 1,
             route: str = "26643006", rtype: str = "MedicationStatement", status: str | None = None) -> Rec:
        period = {"start": day(start)} | ({"end": day(end)} if end is not None else {})
        dosage: dict[str, Any] = {"route": {"coding": [{"system": SCT, "code": route}]},
                                  "timing": {"repeat": {"frequency": per_day, "period": 1, "periodUnit": "d"}}}
        if mg is not None:
            dosage["doseAndRate"] = [{"doseQuantity": {"value": mg, "unit": "mg", "system": UCUM, "code": "mg"}}]
        body: dict[str, Any] = {"medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": rxnorm}]},
                                "effectivePeriod": period}
        if rtype == "MedicationAdministration":
            body |= {"status": status or "completed", "dosage": {k: v for k, v in dosage.items() if k != "timing"} |
                     ({"dose": dosage["doseAndRate"][0]["doseQuantity"]} if mg is not None else {})}
            body["dosage"].pop("doseAndRate", None)
        else:
            body |= {"status": status or ("completed" if end is not None else "active"), "dosage": [dosage]}
        return self.add(rtype, body)

    def record(self) -> PatientRecord:
        return PatientRecord(self.pid, self.patient, self.res)

    def screen(self, site: Path | None = None, randomization: date | None = None, all_criteria: bool = True,
               **settings: Any) -> dict[str, Any]:
        """Every criterion (``all_criteria``: these records test criteria, most without a dermatomyositis)."""
        study = load_study("NCT07377058")
        if settings:
            study = study.with_settings(settings)
        return screen(self.record(), study, Catalog.load(site), S, randomization, all_criteria=all_criteria)


def result(out: dict[str, Any], cid: str) -> str:
    return out["criteria"][cid]["result"]
