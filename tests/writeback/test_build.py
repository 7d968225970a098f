"""Pure builders (issue 6): screening and response results of the sample -> resources that pass validate.check,
with stable identifiers, the adapter tag, derivedFrom every piece of evidence, and never an arm."""

from __future__ import annotations

import json
from datetime import date

import pytest

from fhir_adapter.identity import ADAPTER_TAG, CANONICAL_BASE
from fhir_adapter.paths import sample_dir
from fhir_adapter.sources import open_source
from fhir_adapter.studies.definition import load_study
from fhir_adapter.studies.screen import screen
from fhir_adapter.terminology.catalog import Catalog
from fhir_adapter.writeback import build
from fhir_adapter.writeback.profiles import profiles_dir
from fhir_adapter.writeback.validate import check

AS_OF = date(2026, 6, 30)


@pytest.fixture(scope="module")
def screenings() -> list[dict]:
    study = load_study("NCT07377058")
    catalog = Catalog.load(sample_dir().parent / "site-mappings.json")
    with open_source("sample") as source:
        return [json.loads(json.dumps(screen(r, study, catalog, AS_OF, AS_OF), default=str))
                for r in source.records()]


@pytest.fixture(scope="module")
def screenings_all() -> list[dict]:
    """Every criterion for every patient (``all_criteria``), also for those out of the entry cohort."""
    study = load_study("NCT07377058")
    catalog = Catalog.load(sample_dir().parent / "site-mappings.json")
    with open_source("sample") as source:
        return [screen(r, study, catalog, AS_OF, AS_OF, all_criteria=True) for r in source.records()]


def test_screening_resources_validate_and_carry_no_arm(screenings, screenings_all) -> None:
    assert len(screenings) > 50
    for result in [*screenings, *screenings_all]:
        resources = build.screening_resources(result)
        for resource in resources:
            check(resource)
            assert ADAPTER_TAG in resource["meta"]["tag"]
            text = json.dumps(resource)
            assert "assignedArm" not in text and "actualArm" not in text
        subject, obs = resources
        assert subject["status"] == result["status"] in ("candidate", "potential-candidate", "ineligible")
        assert subject["identifier"][0]["value"] == f"NCT07377058/{result['patient'].removeprefix('Patient/')}"
        assert obs["focus"][0]["identifier"] == subject["identifier"][0]
        assert obs["effectiveDateTime"] == "2026-06-30"
        refs = {d["reference"] for d in obs["derivedFrom"]}
        for crit in result["criteria"].values():
            assert set(crit.get("evidence") or ()) <= refs
        codes = {c["code"]["coding"][0]["code"] for c in obs["component"]}
        assert codes == {"I2"} if "I1" not in result["criteria"] else codes >= {"I1", "E18"}


def test_short_result_of_a_patient_out_of_the_entry_cohort(screenings) -> None:
    """Out of the entry cohort (I2 not met): the ResearchSubject is ineligible, and the screening Observation holds
    the one criterion evaluated, its evidence, and the reason saying why nothing else was."""
    short = [r for r in screenings if r["cohort"] == "out"]
    assert short
    for result in short:
        subject, obs = build.screening_resources(result)
        assert subject["status"] == "ineligible"
        assert [c["code"]["coding"][0]["code"] for c in obs["component"]] == ["I2"]
        assert obs["component"][0]["valueCodeableConcept"]["coding"][0]["code"] == "not-met"
        assert obs["valueCodeableConcept"]["text"].startswith("out of the entry cohort by I2")
        evidence = result["criteria"]["I2"]["evidence"]
        assert {d["reference"] for d in obs["derivedFrom"]} == {result["patient"], *evidence}


def test_screening_component_carries_result_and_reason(screenings) -> None:
    result = screenings[0]
    obs = build.screening_observation(result)
    i1 = next(c for c in obs["component"] if c["code"]["coding"][0]["code"] == "I1")
    assert i1["valueCodeableConcept"]["coding"][0] == {
        "system": f"{CANONICAL_BASE}/CodeSystem/criterion-result", "code": result["criteria"]["I1"]["result"],
        "display": {"met": "Met", "not-met": "Not met", "unknown": "Unknown"}[result["criteria"]["I1"]["result"]]}
    assert i1["valueCodeableConcept"]["text"] == result["criteria"]["I1"]["reason"]


def test_every_criterion_and_part_has_its_component(screenings) -> None:
    """Issue 4: the parts of split criteria (E3a..., E5a/b, E8.1..., E14.1...) sit beside their criterion;
    the written Observation keeps them too, each coded as a child of its criterion in the study's CodeSystem."""
    cs = json.loads((profiles_dir() / "CodeSystem-NCT07377058-criteria.json").read_text(encoding="utf-8"))
    parent = {kid["code"]: c["code"] for c in cs["concept"] for kid in c.get("concept", ())}
    assert cs["count"] == len(cs["concept"]) + len(parent) == 44
    assert {parent[k] for k in ("E3a", "E3h", "E5b", "E8.1", "E8.PF", "E14.3")} == {"E3", "E5", "E8", "E14"}
    seen: set[str] = set()
    for result in screenings:
        obs = build.screening_observation(result)
        codes = [c["code"]["coding"][0]["code"] for c in obs["component"]]
        assert codes == list(result["criteria"])  # every criterion and part, in the result's order
        seen.update(codes)
        for c in obs["component"]:
            if c["code"]["coding"][0]["code"] == "E8.1":
                assert c["code"]["coding"][0]["display"] == "Exclusion 8, part 1"
    assert {"E3a", "E3h", "E5a", "E5b", "E8.1", "E8.4", "E8.PF", "E14.1", "E14.3"} <= seen


def test_builders_are_stable(screenings) -> None:
    assert build.screening_resources(screenings[3]) == build.screening_resources(screenings[3])


RESPONSE = {
    "patient": "Patient/p1", "study": "NCT04966884", "follow_up": {"date": "2026-05-26"},
    "tis": None, "tis_range": [20.0, 47.5], "category": None, "missing": ["haq"], "inactive_disease": False,
    "measures": {"phga": {"points": 20.0, "baseline": {"source": "Observation/a"},
                          "follow_up": {"source": "Observation/b"}},
                 "haq": {"points": None, "problems": ["no usable haq-di value"]}},
    "inactive_detail": {"components": {"ck": {"source": "Observation/c"}}},
}


def test_response_observations_unknown_tis() -> None:
    tis, klass, inactive = build.response_observations(RESPONSE)
    for obs in (tis, klass, inactive):
        check(obs)
        assert obs["effectiveDateTime"] == "2026-05-26"
    assert "valueQuantity" not in tis and "20-47.5" in tis["dataAbsentReason"]["text"]
    phga = tis["component"][0]
    assert phga["valueQuantity"]["value"] == 20.0
    assert tis["component"][3]["dataAbsentReason"]["text"] == "no usable haq-di value"
    assert tis["derivedFrom"] == [{"reference": "Observation/a"}, {"reference": "Observation/b"}]
    assert "dataAbsentReason" in klass
    assert inactive["valueBoolean"] is False and inactive["derivedFrom"] == [{"reference": "Observation/c"}]
    assert tis["identifier"][0]["value"] == "NCT04966884/p1/tis/2026-05-26"


def test_response_observations_known_tis() -> None:
    tis, klass, _ = build.response_observations({**RESPONSE, "tis": 62.5, "category": "major"})
    assert tis["valueQuantity"]["value"] == 62.5
    assert klass["valueCodeableConcept"]["coding"][0]["code"] == "major"
    check(tis)
    check(klass)


def test_provenance() -> None:
    prov = build.provenance(["urn:uuid:1"], ["Observation/a", "Observation/a", "Patient/p"], "NCT07377058")
    check(prov)
    assert prov["agent"][0]["who"]["display"].startswith("fhir-adapter ")
    assert [e["what"].get("reference") for e in prov["entity"]] == ["Observation/a", "Patient/p", None]
    assert "study definition" in prov["entity"][-1]["what"]["display"]


def test_endpoint_changes_observation() -> None:
    """Issue 6 item 3, "and the endpoint changes": follow-up minus baseline per endpoint, in its unit.
    FVC % predicted 68 -> 80: +12 points; ferritin 1,500 -> 480 ng/mL: -1,020; DLCO with no follow-up: absent."""
    endpoints = {
        "fvc-pct-predicted": {"unit": "%", "change": 12, "baseline": {"source": "Observation/f0"},
                              "follow_up": {"source": "Observation/f1"}},
        "ferritin": {"unit": "ng/mL", "change": -1020, "baseline": {"source": "Observation/r0"},
                     "follow_up": {"source": "Observation/r1"}},
        "dlco-pct-predicted": {"unit": "%", "change": None, "baseline": {"source": "Observation/d0"},
                               "follow_up": None, "problems": ["no follow-up value within 30 days"]},
    }
    *_, changes = build.response_observations({**RESPONSE, "endpoints": endpoints})
    check(changes)
    assert changes["code"]["coding"][0]["code"] == "endpoint-changes"
    by_code = {c["code"]["coding"][0]["code"]: c for c in changes["component"]}
    assert by_code["fvc-pct-predicted"]["valueQuantity"] == {
        "value": 12, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"}
    assert by_code["ferritin"]["valueQuantity"]["value"] == -1020
    assert by_code["dlco-pct-predicted"]["dataAbsentReason"]["text"] == "no follow-up value within 30 days"
    assert {d["reference"] for d in changes["derivedFrom"]} == {
        "Observation/f0", "Observation/f1", "Observation/r0", "Observation/r1", "Observation/d0"}
    assert changes["identifier"][0]["value"] == "NCT04966884/p1/endpoint-changes/2026-05-26"
