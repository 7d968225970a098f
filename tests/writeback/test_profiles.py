"""profiles/ (issue 6): every definition is valid FHIR R4 (R4B models), the schemas are valid JSON Schemas, and
``validate.check`` names the field of whatever fails."""

from __future__ import annotations

import copy
import importlib
import json

import jsonschema
import pytest

from fhir_adapter.identity import ADAPTER_TAG, CANONICAL_BASE
from fhir_adapter.paths import data_dir
from fhir_adapter.studies.definition import load_study
from fhir_adapter.writeback.errors import WriteBackError
from fhir_adapter.writeback.profiles import code_systems, research_study
from fhir_adapter.writeback.validate import check

PROFILES = data_dir("profiles")
RESOURCES = sorted(p for p in PROFILES.glob("[A-Z]*-*.json"))


@pytest.mark.parametrize("path", RESOURCES, ids=lambda p: p.name)
def test_definitions_are_valid_fhir(path) -> None:
    resource = json.loads(path.read_text())
    rtype = resource["resourceType"]
    model = getattr(importlib.import_module(f"fhir.resources.R4B.{rtype.lower()}"), rtype)
    model.model_validate(resource)
    assert path.name.startswith(f"{rtype}-{resource['id']}")
    if rtype == "StructureDefinition":
        assert resource["fhirVersion"] == "4.0.1"


@pytest.mark.parametrize("path", sorted((PROFILES / "schemas").glob("*.json")), ids=lambda p: p.name)
def test_schemas_are_valid(path) -> None:
    document = json.loads(path.read_text())
    jsonschema.validators.validator_for(document).check_schema(document)


def test_code_systems_cover_criteria_and_measures() -> None:
    systems = code_systems()
    assert {"I1", "I8", "E1", "E18"} <= systems[f"{CANONICAL_BASE}/CodeSystem/NCT07377058-criteria"]
    assert systems[f"{CANONICAL_BASE}/CodeSystem/criterion-result"] == {"met", "not-met", "unknown"}
    assert {"phga-vas", "mmt8", "haq-di", "myoact-total"} <= systems[f"{CANONICAL_BASE}/CodeSystem/myositis-measures"]
    assert {"none", "minimal", "moderate", "major"} == systems[f"{CANONICAL_BASE}/CodeSystem/response-class"]


@pytest.mark.parametrize("study", ["NCT07377058", "NCT04966884"])
def test_each_study_files_criteria_and_parts_are_codes_of_its_code_system(study) -> None:
    """The CodeSystems are edited by hand: a criterion or part added to a study file without its code would be
    left out of the screening Observation."""
    definition = load_study(study)
    ids = {c.id for c in definition.criteria} | {p.id for c in definition.criteria for p in c.parts}
    codes = code_systems()[f"{CANONICAL_BASE}/CodeSystem/{study}-criteria"]
    assert ids <= codes
    assert codes - ids <= {"E8.1", "E8.2", "E8.3", "E8.4", "E8.PF"}  # E8's limbs come from its rule


def test_research_studies() -> None:
    promis = research_study("NCT07377058")
    assert promis["identifier"] == [{"system": "https://clinicaltrials.gov", "value": "NCT07377058"}]
    assert [a["name"] for a in promis["arm"]] == ["tocilizumab", "placebo"]
    assert research_study("NCT04966884")["identifier"][0]["value"] == "NCT04966884"
    check(promis)


def _subject() -> dict:
    return {"resourceType": "ResearchSubject", "meta": {"tag": [dict(ADAPTER_TAG)]},
            "identifier": [{"system": f"{CANONICAL_BASE}/research-subject", "value": "NCT07377058/p1"}],
            "status": "candidate",
            "study": {"identifier": {"system": "https://clinicaltrials.gov", "value": "NCT07377058"}},
            "individual": {"reference": "Patient/p1"}}


def test_check_accepts_a_good_subject() -> None:
    check(_subject())


@pytest.mark.parametrize(("change", "field"), [
    (lambda r: r.update(status="not-a-status"), "ResearchSubject.status"),
    (lambda r: r.update(meta={"tag": [{"system": "http://other", "code": "x"}]}), "ResearchSubject.meta.tag"),
    (lambda r: r["identifier"][0].update(system="http://other"), "ResearchSubject.identifier[0].system"),
    (lambda r: r.pop("identifier"), "ResearchSubject"),
    (lambda r: r.update(bogus=1), "ResearchSubject.bogus"),
    (lambda r: r.update(assignedArm="tocilizumab"), "ResearchSubject"),
])
def test_check_names_the_field(change, field) -> None:
    resource = copy.deepcopy(_subject())
    change(resource)
    with pytest.raises(WriteBackError) as info:
        check(resource)
    assert info.value.field == field, str(info.value)


def test_check_rejects_observation_status_and_unknown_adapter_code() -> None:
    obs = {"resourceType": "Observation", "meta": {"tag": [dict(ADAPTER_TAG)]},
           "identifier": [{"system": f"{CANONICAL_BASE}/observation", "value": "NCT04966884/p1/tis/2026-05-26"}],
           "status": "final",
           "code": {"coding": [{"system": f"{CANONICAL_BASE}/CodeSystem/adapter-observation", "code": "tis"}]},
           "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2026-05-26",
           "method": {"coding": [{"system": f"{CANONICAL_BASE}/software", "code": "fhir-adapter"}]},
           "valueQuantity": {"value": 40, "unit": "points"}}
    check(obs)
    with pytest.raises(WriteBackError, match="bogus") as info:
        check({**obs, "status": "bogus"})
    assert info.value.field == "Observation.status"
    bad = copy.deepcopy(obs)
    bad["code"]["coding"][0]["code"] = "tiss"
    with pytest.raises(WriteBackError) as info:
        check(bad)
    assert info.value.field == "Observation.code.coding[0]"
    with pytest.raises(WriteBackError):
        check({**obs, "code": {"coding": [{"system": f"{CANONICAL_BASE}/CodeSystem/adapter-observation",
                                            "code": "screening-assessment"}]}})  # no components, no derivedFrom
