"""Safety signals after baseline, flagged for a person to review, never adjudicated (criteria-tables.md R7).

NCT04966884 seed: "Secondary endpoints included safety measures" (no terms defined). The signals and their
thresholds are data (studies/response.json ``safety``):

- a new infection: a Condition of an infection class or concept (herpes zoster, PJP, CMV, TB, sepsis,
  pneumonia...) whose onset (or, without one, recorded date) falls after baseline, and that was not already
  recorded on or before baseline;
- a cytopenia: WBC, neutrophils, lymphocytes, hemoglobin or platelets below the PROMIS-MDA5 E3 limits;
- a liver enzyme rise: ALT or AST >= 3 x ULN (``referenceRange.high`` of the same result).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from fhir_adapter.record.dates import fhir_date
from fhir_adapter.record.patient_record import PatientRecord
from fhir_adapter.response.readings import Readings, _num
from fhir_adapter.terminology.catalog import Catalog


def lab_concepts(settings: Mapping[str, Any]) -> set[str]:
    return {c["concept"] for c in settings.get("cytopenias", ())} | {c["concept"] for c in settings.get("liver", ())}


def _condition_date(c: Mapping[str, Any]) -> date | None:
    for key in ("onsetDateTime", "recordedDate"):
        if isinstance(c.get(key), str):
            return fhir_date(c[key])
    period = c.get("onsetPeriod")
    if isinstance(period, Mapping) and isinstance(period.get("start"), str):
        return fhir_date(period["start"])
    return None


def _in(day: date, baseline: date, end: date | None) -> bool:
    return day > baseline and (end is None or day <= end)


def infections(record: PatientRecord, catalog: Catalog, settings: Mapping[str, Any], baseline: date,
               end: date | None) -> list[dict[str, Any]]:
    classes = set(settings.get("infection_classes", ()))
    concepts = set(settings.get("infection_concepts", ()))
    found: list[tuple[date, str, str, str]] = []
    before: set[str] = set()
    for c in record.of("Condition"):
        day = _condition_date(c)
        for concept in catalog.classify(c.get("code")):
            if concept.id not in concepts and not classes.intersection(concept.classes):
                continue
            if day is None:
                continue
            if day <= baseline:
                before.add(concept.id)
            elif end is None or day <= end:
                found.append((day, concept.id, concept.display, f"Condition/{c.get('id')}"))
    out = []
    for day, cid, display, source in sorted(found):
        if cid in before:
            continue
        out.append({"signal": "new-infection", "concept": cid, "display": display, "date": day.isoformat(),
                    "source": source})
    return out


def lab_signals(readings: Readings, settings: Mapping[str, Any], baseline: date,
                end: date | None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for rule in settings.get("cytopenias", ()):
        for r in readings.usable(rule["concept"]):
            if _in(r.when, baseline, end) and r.value is not None and r.value < rule["below"]:
                out.append({"signal": "cytopenia", "concept": rule["concept"], "date": r.when.isoformat(),
                            "value": _num(r.value), "unit": r.unit,
                            "threshold": f"< {rule['below']:g} {rule.get('unit', r.unit or '')}".rstrip(),
                            "source": r.source})
    for rule in settings.get("liver", ()):
        multiple = float(rule["uln_multiple"])
        for r in readings.of(rule["concept"]):
            if not (_in(r.when, baseline, end) and r.usable and r.value is not None):
                continue
            if not r.uln:
                out.append({"signal": "liver-enzyme-unknown-uln", "concept": rule["concept"],
                            "date": r.when.isoformat(), "value": _num(r.value), "unit": r.unit, "source": r.source,
                            "note": "no ULN (referenceRange.high): the x ULN rise cannot be checked"})
            elif r.value >= multiple * r.uln:
                out.append({"signal": "liver-enzyme-rise", "concept": rule["concept"], "date": r.when.isoformat(),
                            "value": _num(r.value), "unit": r.unit, "uln": _num(r.uln),
                            "x_uln": _num(r.value / r.uln), "threshold": f">= {multiple:g} x ULN",
                            "source": r.source})
    out.sort(key=lambda s: (s["date"], s["signal"], s["concept"]))
    return out


def safety_signals(record: PatientRecord, catalog: Catalog, readings: Readings, settings: Mapping[str, Any],
                   baseline: date, end: date | None) -> list[dict[str, Any]]:
    """Every signal after ``baseline`` up to ``end`` (None: no end), by date; each for a person to review."""
    signals = infections(record, catalog, settings, baseline, end) + lab_signals(readings, settings, baseline, end)
    signals.sort(key=lambda s: (s["date"], s["signal"], s["concept"]))
    return signals
