"""``Rec``: one invented patient's resources, built step by step."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sample.codes import (
    ACT_CODE,
    AS_OF,
    COND_CLIN,
    COND_VER,
    CONDS,
    DOSE_FORM,
    DRUGS,
    DUR,
    HTEST,
    INTERP,
    IV,
    LOCAL_ASSESS,
    LOCAL_LAB,
    LOCAL_PROC,
    LOINC,
    MEASURE_CODES,
    MEASURES,
    NEG,
    OBS,
    OBS_CAT,
    ORAL,
    POS,
    REF,
    RXNORM,
    SAMPLE_TAG,
    SCT,
    TYPES,
    UCUM,
    UNITS,
    cc,
    convert,
    d,
    dt,
    quantity,
)


@dataclass
class Rec:
    """Builds the resources of one patient with stable ids ``<pid>-<kind>-<n>``."""

    pid: str
    style: str = "intl"  # intl: LOINC+local labs, SNOMED+ICD-10-CM; who: WHO ICD-10/ATC; local: local codes only
    out: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {t: [] for t in TYPES})
    n: dict[str, int] = field(default_factory=dict)
    encounter: str | None = None

    def rid(self, kind: str) -> str:
        self.n[kind] = self.n.get(kind, 0) + 1
        return f"{self.pid}-{kind}{self.n[kind]:02d}"

    def add(self, rtype: str, body: dict[str, Any], kind: str) -> dict[str, Any]:
        res = {"resourceType": rtype, "id": self.rid(kind),
               "meta": {"tag": [HTEST, SAMPLE_TAG]}, **body}
        self.out[rtype].append(res)
        return res

    @property
    def subject(self) -> dict[str, str]:
        return {"reference": f"Patient/{self.pid}"}

    # --- Patient / Encounter ---------------------------------------------------------------------------
    def patient(self, birth: date, gender: str, deceased: date | None = None) -> None:
        label = self.pid.replace("-", " ").title()
        body: dict[str, Any] = {
            "resourceType": "Patient", "id": self.pid,
            "meta": {"tag": [HTEST, SAMPLE_TAG]},
            "text": {"status": "generated",
                     "div": f'<div xmlns="http://www.w3.org/1999/xhtml">SYNTHETIC test patient {self.pid}</div>'},
            "identifier": [{"system": "http://hospital.example.cn/mrn", "value": f"SYN-{self.pid}"}],
            "active": True,
            "name": [{"use": "official", "family": "Synthetic", "given": ["Test", label],
                      "text": f"Test {label} SYNTHETIC"}],
            "gender": gender, "birthDate": birth.isoformat()}
        if deceased is not None:
            body["deceasedDateTime"] = dt(deceased, 4)
        self.out["Patient"].append(body)

    def visit(self, day: date, inpatient: bool = False, days: int = 0,
              reason: tuple[list[tuple[str, str, str]], str] | None = None) -> str:
        cls = ("IMP", "inpatient encounter") if inpatient else ("AMB", "ambulatory")
        body: dict[str, Any] = {"status": "finished", "class": {"system": ACT_CODE, "code": cls[0], "display": cls[1]},
                                "subject": self.subject,
                                "period": {"start": dt(day, 8), "end": dt(day + DUR(days=days), 17)}}
        if reason:
            body["reasonCode"] = [cc(*reason)]
        res = self.add("Encounter", body, "enc")
        self.encounter = res["id"]
        return res["id"]

    # --- Observations --------------------------------------------------------------------------------------
    def _obs_code(self, key: str) -> tuple[dict[str, Any], str]:
        if key in MEASURE_CODES:
            code, disp, lcode, ldisp, cat = MEASURE_CODES[key]
            if self.style == "local":
                return cc([(LOCAL_ASSESS, lcode, ldisp)], ldisp), cat
            return cc([(MEASURES, code, disp)], disp), cat
        loinc, disp, lcode, ldisp, cat = OBS[key]
        codings = [(LOCAL_LAB, lcode, ldisp)]
        if loinc and self.style != "local":
            codings.append((LOINC, loinc, disp))
        return cc(codings, ldisp), cat

    def obs(self, key: str, when: date, *, value: dict[str, Any] | None = None, status: str = "final",
            interpretation: str | None = None, ref: dict[str, Any] | None = None, hh: int = 8,
            extra: dict[str, Any] | None = None) -> dict[str, Any]:
        code, cat = self._obs_code(key)
        body: dict[str, Any] = {
            "status": status,
            "category": [{"coding": [{"system": OBS_CAT, "code": cat}]}],
            "code": code, "subject": self.subject, "effectiveDateTime": dt(when, hh)}
        if self.encounter:
            body["encounter"] = {"reference": f"Encounter/{self.encounter}"}
        if value:
            body.update(value)
        if interpretation:
            body["interpretation"] = [{"coding": [{"system": INTERP, "code": interpretation}]}]
        if ref:
            body["referenceRange"] = [ref]
        if extra:
            body.update(extra)
        return self.add("Observation", body, "obs")

    def lab(self, key: str, when: date, canonical: float, unit: str, ndigits: int = 0,
            loinc_key: str | None = None, status: str = "final", ref_key: str | None = None) -> dict[str, Any]:
        """A quantitative lab: ``canonical`` in the canonical unit, written in ``unit`` with its reference range."""
        v = convert(canonical, unit, ndigits)
        ref = None
        rk = ref_key or key
        if rk in REF:
            lo, hi = REF[rk]
            rdig = max(ndigits, 2 if UNITS[unit][2] < 0.2 else ndigits)
            ref = {"low": quantity(convert(lo, unit, rdig), unit), "high": quantity(convert(hi, unit, rdig), unit)}
            flag = "H" if canonical > hi else "L" if canonical < lo else "N"
        else:
            flag = None
        return self.obs(loinc_key or key, when, value={"valueQuantity": quantity(v, unit)}, interpretation=flag,
                        ref=ref, status=status)

    def qual(self, key: str, when: date, positive: bool, status: str = "final") -> dict[str, Any]:
        return self.obs(key, when, value={"valueCodeableConcept": POS if positive else NEG},
                        interpretation="POS" if positive else "NEG", status=status)

    def measure(self, key: str, when: date, value: float, unit: str, high: float | None = None) -> None:
        ref = None
        if high is not None:
            ref = {"low": quantity(0, unit), "high": quantity(high, unit),
                   "text": f"0-{high:g} ({'MMT-8 unilateral, 8 groups' if high == 80 else 'MMT-8 bilateral'})"}
        self.obs(key, when, value={"valueQuantity": quantity(value, unit)}, ref=ref, hh=10)

    # --- Conditions, allergies, reports ------------------------------------------------------------------------
    def condition(self, key: str, onset: date, *, clinical: str = "active", verification: str = "confirmed",
                  abatement: date | None = None, style: str | None = None) -> None:
        systems, text = CONDS[key]
        codings = systems.get(style or self.style) or systems["intl"]
        body: dict[str, Any] = {
            "clinicalStatus": {"coding": [{"system": COND_CLIN, "code": clinical}]},
            "verificationStatus": {"coding": [{"system": COND_VER, "code": verification}]},
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category",
                                      "code": "problem-list-item"}]}],
            "code": cc(codings, text), "subject": self.subject,
            "onsetDateTime": onset.isoformat(), "recordedDate": onset.isoformat()}
        if abatement:
            body["abatementDateTime"] = abatement.isoformat()
        self.add("Condition", body, "cond")

    def allergy(self, codings: list[tuple[str, str, str]], text: str, verification: str = "confirmed") -> None:
        self.add("AllergyIntolerance", {
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                                     "allergyintolerance-clinical", "code": "active"}]},
            "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                                         "allergyintolerance-verification", "code": verification}]},
            "type": "allergy", "category": ["medication"], "code": cc(codings, text), "patient": self.subject,
            "recordedDate": d(-400).isoformat(),
            "reaction": [{"manifestation": [cc([(SCT, "271807003", "Eruption of skin")], "rash")]}]}, "alg")

    def no_known_allergy(self) -> None:
        """An explicit "no known allergy" (SNOMED 716186003): the allergy list was taken and is empty, so an
        allergy missing from the record is absent rather than unknown (issue 4 item 3). Not an allergen."""
        self.add("AllergyIntolerance", {
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                                     "allergyintolerance-clinical", "code": "active"}]},
            "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                                         "allergyintolerance-verification", "code": "confirmed"}]},
            "code": cc([(SCT, "716186003", "No known allergy")], "No known allergy"), "patient": self.subject,
            "recordedDate": d(-400).isoformat()}, "alg")

    def report(self, text: str, when: date, normal: bool = False) -> None:
        body: dict[str, Any] = {
            "status": "final", "category": [cc([("http://terminology.hl7.org/CodeSystem/v2-0074", "RAD",
                                                 "Radiology")], "Radiology")],
            "code": cc([(LOCAL_PROC, "RAD-HRCT-CHEST", "胸部高分辨率CT")], "HRCT chest"),
            "subject": self.subject, "effectiveDateTime": dt(when, 14), "issued": dt(when, 18),
            "conclusion": text}
        if normal:
            body["conclusionCode"] = [cc([(SCT, "17621005", "Normal")], "Normal")]
        self.add("DiagnosticReport", body, "dr")

    def procedure(self, when: date, status: str = "completed", reason: str | None = None) -> None:
        body: dict[str, Any] = {"status": status,
                                "code": cc([(LOCAL_PROC, "PFT-FULL", "肺功能全套(通气+弥散)")],
                                           "Pulmonary function test, spirometry + DLCO"),
                                "subject": self.subject, "performedDateTime": dt(when, 11)}
        if reason:
            body["statusReason"] = {"text": reason}
        self.add("Procedure", body, "proc")

    # --- Medications ----------------------------------------------------------------------------------------
    def _dosage(self, dose: float | None, unit: str, per_day: int, route: tuple[str, str, str], text: str,
                period: int = 1, period_unit: str = "d") -> dict[str, Any]:
        dsg: dict[str, Any] = {"text": text}
        if per_day:
            dsg["timing"] = {"repeat": {"frequency": per_day, "period": period, "periodUnit": period_unit}}
        dsg["route"] = cc([route], route[2])
        if dose is not None:
            q = ({"value": dose, "unit": "mg", "system": UCUM, "code": "mg"} if unit == "mg" else
                 {"value": dose, "unit": "g", "system": UCUM, "code": "g"} if unit == "g" else
                 {"value": dose, "unit": unit, "system": DOSE_FORM, "code": "TAB" if unit == "tablet" else "CAP"})
            dsg["doseAndRate"] = [{"doseQuantity": q}]
        return dsg

    def med_statement(self, drug: str, start: date, end: date | None = None, *, dose: float | None = None,
                      unit: str = "mg", per_day: int = 1, route: tuple[str, str, str] = ORAL,
                      status: str | None = None, text: str | None = None, period: int = 1,
                      period_unit: str = "d", medication_ref: str | None = None,
                      text_only: bool = False) -> None:
        codings, drug_text = DRUGS[drug]
        if status is None:
            status = "active" if end is None or end >= AS_OF else "completed"
        eff: dict[str, str] = {"start": start.isoformat()}
        if end is not None:
            eff["end"] = end.isoformat()
        dtext = text or (f"{dose:g} {unit} x{per_day}/{period_unit}" if dose is not None else drug_text)
        body: dict[str, Any] = {"status": status}
        if medication_ref:
            body["medicationReference"] = {"reference": medication_ref, "display": drug_text}
        else:
            body["medicationCodeableConcept"] = cc(codings, drug_text)
        body.update(subject=self.subject, effectivePeriod=eff, dateAsserted=min(start, AS_OF).isoformat())
        body["dosage"] = [{"text": dtext} if text_only else
                          self._dosage(dose, unit, per_day, route, dtext, period, period_unit)]
        self.add("MedicationStatement", body, "ms")

    def med_statement_contained(self, start: date, caps: int, per_day: int, mg_per_cap: float = 1) -> None:
        """Tacrolimus as "1 capsule" with the strength in a contained Medication."""
        med = {"resourceType": "Medication", "id": "m1",
               "code": cc(DRUGS["tacrolimus"][0], "tacrolimus 1 mg capsule"),
               "form": {"coding": [{"system": DOSE_FORM, "code": "CAP", "display": "Capsule"}]},
               "ingredient": [{"itemCodeableConcept": cc([(RXNORM, "42316", "tacrolimus")], "tacrolimus"),
                               "isActive": True,
                               "strength": {"numerator": {"value": mg_per_cap, "unit": "mg", "system": UCUM,
                                                          "code": "mg"},
                                            "denominator": {"value": 1, "unit": "capsule", "system": DOSE_FORM,
                                                            "code": "CAP"}}}]}
        self.add("MedicationStatement", {
            "contained": [med], "status": "active", "medicationReference": {"reference": "#m1"},
            "subject": self.subject, "effectivePeriod": {"start": start.isoformat()},
            "dateAsserted": start.isoformat(),
            "dosage": [self._dosage(caps, "capsule", per_day, ORAL, f"{caps} capsule twice daily")]}, "ms")

    def med_request(self, drug: str, authored: date, dose: float, per_day: int, text: str,
                    status: str = "active") -> None:
        codings, drug_text = DRUGS[drug]
        self.add("MedicationRequest", {
            "status": status, "intent": "order", "medicationCodeableConcept": cc(codings, drug_text),
            "subject": self.subject, "authoredOn": authored.isoformat(),
            "dosageInstruction": [self._dosage(dose, "mg", per_day, ORAL, text)],
            "dispenseRequest": {"validityPeriod": {"start": authored.isoformat()}}}, "mr")

    def med_admin(self, drug: str, start: date, end: date | None, dose: float, unit: str, text: str) -> None:
        codings, drug_text = DRUGS[drug]
        eff = ({"effectivePeriod": {"start": dt(start, 9), "end": dt(end, 12)}} if end
               else {"effectiveDateTime": dt(start, 9)})
        self.add("MedicationAdministration", {
            "status": "completed", "medicationCodeableConcept": cc(codings, drug_text), "subject": self.subject,
            **eff,
            "dosage": {"text": text, "route": cc([IV], "IV"),
                       "dose": {"value": dose, "unit": unit, "system": UCUM, "code": unit}}}, "ma")
