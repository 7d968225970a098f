"""Pure builders (issue 6): screening and response results -> the FHIR R4 resources the adapter writes back.

Every resource carries ``ADAPTER_TAG`` (so it is never read back as clinical input) and an identifier in the
adapter's system that is the same on every run, so a re-run updates instead of duplicating. No arm assignment is
ever built: PROMIS-MDA5 is blinded.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from fhir_adapter import __version__
from fhir_adapter.identity import ADAPTER_TAG, CANONICAL_BASE
from fhir_adapter.paths import data_dir
from fhir_adapter.writeback.profiles import code_systems, coding

Resource = dict[str, Any]
CS = f"{CANONICAL_BASE}/CodeSystem"
SUBJECT_SYSTEM = f"{CANONICAL_BASE}/research-subject"
OBSERVATION_SYSTEM = f"{CANONICAL_BASE}/observation"
SOFTWARE_SYSTEM = f"{CANONICAL_BASE}/software"
CTGOV = "https://clinicaltrials.gov"
ABSENT = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
SUBJECT_STATUS = "http://hl7.org/fhir/research-subject-status"
MEASURES = ("phga", "ptga", "mmt8", "haq", "enzyme", "extra")


def _tagged(resource: Resource) -> Resource:
    return {"resourceType": resource.pop("resourceType"), "meta": {"tag": [dict(ADAPTER_TAG)]}, **resource}


def _pid(result: dict[str, Any]) -> str:
    return str(result["patient"]).removeprefix("Patient/")


def subject_identifier(study: str, patient_id: str) -> dict[str, str]:
    """The ResearchSubject's identifier: one per study and patient, stable across runs."""
    return {"system": SUBJECT_SYSTEM, "value": f"{study}/{patient_id}"}


def study_reference(study: str) -> dict[str, Any]:
    return {"type": "ResearchStudy", "identifier": {"system": CTGOV, "value": study}}


def method() -> dict[str, Any]:
    """Observation.method: the adapter and its version."""
    return {"coding": [{"system": SOFTWARE_SYSTEM, "code": "fhir-adapter", "display": f"fhir-adapter {__version__}"}],
            "text": f"fhir-adapter {__version__}"}


def _observation(study: str, pid: str, key: str, code: str, effective: str) -> Resource:
    return {"resourceType": "Observation",
            "identifier": [{"system": OBSERVATION_SYSTEM, "value": f"{study}/{pid}/{key}"}],
            "status": "final", "code": {"coding": [coding(f"{CS}/adapter-observation", code)]},
            "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": effective}


def _unique(refs: Any) -> list[dict[str, str]]:
    seen: list[str] = []
    for ref in refs:
        if isinstance(ref, str) and "/" in ref and ref not in seen:
            seen.append(ref)
    return [{"reference": r} for r in seen]


def research_subject(result: dict[str, Any]) -> Resource:
    """The ResearchSubject of a screening result: status candidate, potential-candidate or ineligible."""
    study, pid = result["study"], _pid(result)
    return _tagged({"resourceType": "ResearchSubject", "identifier": [subject_identifier(study, pid)],
                    "status": result["status"], "study": study_reference(study),
                    "individual": {"reference": f"Patient/{pid}"}})


def screening_observation(result: dict[str, Any]) -> Resource:
    """The screening-assessment Observation: a component per criterion and per part of a split criterion (E3a,
    E8.1, E14.1...: the study's CodeSystem has them as child concepts) with its result and the reason as text,
    derivedFrom every piece of evidence, focus the ResearchSubject."""
    study, pid = result["study"], _pid(result)
    criteria_cs = f"{CS}/{study}-criteria"
    known = code_systems().get(criteria_cs, frozenset())
    components, evidence = [], []
    for cid, crit in result.get("criteria", {}).items():
        if cid not in known:
            continue  # information items never affect the status: not criteria
        value = {"coding": [coding(f"{CS}/criterion-result", crit["result"])]}
        if crit.get("reason"):
            value["text"] = crit["reason"]
        components.append({"code": {"coding": [coding(criteria_cs, cid)]}, "valueCodeableConcept": value})
        evidence.extend(crit.get("evidence") or ())
    obs = _observation(study, pid, "screening", "screening-assessment", result["as_of"])
    obs.update(focus=[{"type": "ResearchSubject", "identifier": subject_identifier(study, pid)}],
               valueCodeableConcept={"coding": [{"system": SUBJECT_STATUS, "code": result["status"]}],
                                     **({"text": result["reason"]} if result.get("reason") else {})},
               derivedFrom=_unique([result["patient"], *evidence]), method=method(), component=components)
    return _tagged(obs)


def _absent(text: str) -> dict[str, Any]:
    return {"coding": [{"system": ABSENT, "code": "unknown", "display": "Unknown"}], "text": text}


def _points(value: float) -> dict[str, Any]:
    return {"value": value, "unit": "points", "system": "http://unitsofmeasure.org", "code": "{points}"}


def endpoint_changes(result: dict[str, Any], when: str) -> Resource | None:
    """The endpoint-changes Observation: per secondary endpoint (seed: "change from baseline in ... FVC %
    predicted, DLCO % predicted, the ferritin level, peripheral lymphocyte subsets") the follow-up value minus
    the baseline value in the endpoint's unit, or why it is missing. None when the result has no endpoints."""
    endpoints = result.get("endpoints") or {}
    known = code_systems().get(f"{CS}/endpoint", frozenset())
    components, sources = [], []
    for key, e in endpoints.items():
        if key not in known or not isinstance(e, dict):
            continue
        comp: dict[str, Any] = {"code": {"coding": [coding(f"{CS}/endpoint", key)]}}
        if e.get("change") is not None and e.get("unit"):
            comp["valueQuantity"] = {"value": e["change"], "unit": e["unit"], "system": "http://unitsofmeasure.org",
                                     "code": e["unit"]}
        else:
            comp["dataAbsentReason"] = _absent("; ".join(e.get("problems") or ()) or "no baseline or follow-up value")
        components.append(comp)
        sources += [(e.get(k) or {}).get("source") for k in ("baseline", "follow_up")]
    if not components:
        return None
    study, pid = result["study"], _pid(result)
    obs = _observation(study, pid, f"endpoint-changes/{when}", "endpoint-changes", when)
    obs.update(component=components, method=method())
    if derived := _unique(sources):
        obs["derivedFrom"] = derived
    return obs


def response_observations(result: dict[str, Any]) -> list[Resource]:
    """The TIS, improvement-class, inactive-disease and endpoint-changes Observations of a response result, at
    the follow-up date."""
    study, pid = result["study"], _pid(result)
    when = (result.get("follow_up") or {})["date"]
    measures = result.get("measures") or {}
    sources = [(m.get(k) or {}).get("source") for m in measures.values() for k in ("baseline", "follow_up")
               if isinstance(m, dict)]
    missing = ", ".join(result.get("missing") or ()) or "a measure"

    tis = _observation(study, pid, f"tis/{when}", "tis", when)
    if result.get("tis") is not None:
        tis["valueQuantity"] = _points(result["tis"])
    else:
        rng = result.get("tis_range") or []
        text = f"missing: {missing}" + (f"; possible total {rng[0]:g}-{rng[1]:g}" if len(rng) == 2 else "")
        tis["dataAbsentReason"] = _absent(text)
    components = []
    for key in MEASURES:
        m = measures.get(key) or {}
        comp: dict[str, Any] = {"code": {"coding": [coding(f"{CS}/tis-measure", key)]}}
        if m.get("points") is not None:
            comp["valueQuantity"] = _points(m["points"])
        else:
            comp["dataAbsentReason"] = _absent("; ".join(m.get("problems") or ()) or "not scored")
        components.append(comp)
    tis.update(derivedFrom=_unique(sources), method=method(), component=components)

    klass = _observation(study, pid, f"response-class/{when}", "response-class", when)
    if result.get("category"):
        klass["valueCodeableConcept"] = {"coding": [coding(f"{CS}/response-class", result["category"])]}
    else:
        klass["dataAbsentReason"] = _absent(f"the TIS may fall in more than one class (missing: {missing})")
    klass.update(derivedFrom=_unique(sources), method=method())

    detail = result.get("inactive_detail") or {}
    inactive = _observation(study, pid, f"inactive-disease/{when}", "inactive-disease", when)
    if result.get("inactive_disease") is not None:
        inactive["valueBoolean"] = bool(result["inactive_disease"])
    else:
        inactive["dataAbsentReason"] = _absent("; ".join(detail.get("problems") or ()) or "not decided")
    inactive_sources = [c.get("source") for c in (detail.get("components") or {}).values() if isinstance(c, dict)]
    inactive.update(derivedFrom=_unique(inactive_sources), method=method())
    for obs in (tis, klass, inactive):
        if not obs["derivedFrom"]:
            del obs["derivedFrom"]
    changes = endpoint_changes(result, when)
    return [_tagged(o) for o in (tis, klass, inactive, *([changes] if changes else []))]


def study_version(study: str) -> str:
    """The version of a study definition: the first 12 hex digits of the SHA-256 of ``studies/{study}.json``."""
    path = data_dir("studies") / f"{study}.json"
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12] if path.exists() else "unknown"


def provenance(targets: list[str], sources: list[str], study: str, recorded: datetime | None = None) -> Resource:
    """Who wrote ``targets`` (references or urn:uuid fullUrls) from what: the adapter and its version, each source
    resource, and the study definition's version."""
    when = (recorded or datetime.now(UTC)).isoformat(timespec="seconds")
    software = f"fhir-adapter {__version__}"
    entities = [{"role": "source", "what": r} for r in _unique(sources)]
    definition = {"type": "ResearchStudy", "identifier": {"system": CTGOV, "value": study},
                  "display": f"{study} study definition {study_version(study)}"}
    entities.append({"role": "source", "what": definition})
    return _tagged({"resourceType": "Provenance", "target": [{"reference": t} for t in targets], "recorded": when,
                    "agent": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                                                    "code": "assembler"}]},
                               "who": {"identifier": {"system": SOFTWARE_SYSTEM, "value": software},
                                       "display": software}}],
                    "entity": entities})


def screening_resources(result: dict[str, Any]) -> list[Resource]:
    """The ResearchSubject and the screening Observation of one screening result."""
    return [research_subject(result), screening_observation(result)]
