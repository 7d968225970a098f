"""Site files: local codes, units, scales and system aliases join the catalog; bad files name file and entry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fhir_adapter.errors import ConfigError
from fhir_adapter.paths import data_dir
from fhir_adapter.terminology import Catalog
from fhir_adapter.terminology.catalog import read_catalog

LAB = "http://hospital.example.cn/CodeSystem/lab"
TIMES_10_9 = "\u00d710^9/L"  # the multiplication sign Chinese labs send
SAMPLE_SITE = Path(__file__).resolve().parents[2] / "fhir_adapter" / "sample" / "site-mappings.json"


def write(tmp_path: Path, doc: dict, name: str = "site.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    return path


def test_site_adds_a_local_lab_code_and_its_unit(tmp_path):
    site = write(tmp_path, {"site": "Test hospital", "codes": [
        {"concept": "ck", "system": LAB, "code": "CHEM-CK", "display": "肌酸激酶", "unit": "U/L"},
        {"concept": "mmt8", "system": LAB, "code": "MMT", "scale": [0, 150]}],
        "units": {TIMES_10_9: "10*9/L"}})
    catalog = Catalog.load(site)
    cc = {"coding": [{"system": LAB, "code": "CHEM-CK"}]}
    assert [c.id for c in catalog.classify(cc)] == ["ck"]
    assert catalog.local_unit(LAB, "CHEM-CK") == "U/L"
    assert catalog.local_scale(LAB, "MMT") == (0, 150)
    assert catalog.unit_synonyms[TIMES_10_9] == "10*9/L"
    added = [e for e in catalog.concept("ck").codes if e.status == "SITE"]
    assert added and added[0].code == "CHEM-CK" and "Test hospital" in added[0].source
    # the package catalog is untouched
    assert Catalog.load().classify(cc) == ()
    assert Catalog.load(site) is catalog  # cached per file


def test_system_alias_maps_china_clinical_icd10_by_who_prefix(tmp_path):
    local = "http://hospital.example.cn/CodeSystem/icd10-cn-clinical"
    site = write(tmp_path, {"site": "x", "system_aliases": {local: "http://hl7.org/fhir/sid/icd-10"}})
    catalog = Catalog.load(site)
    assert [c.id for c in catalog.classify_coding(local, "M33.101")] == ["dermatomyositis"]
    assert [c.id for c in catalog.classify_coding(local, "J84.101")] == ["ild"]


def test_sample_site_file_is_valid_and_maps_the_sample_local_codes():
    catalog = Catalog.load(SAMPLE_SITE)
    scenarios = json.loads((SAMPLE_SITE.parent / "data" / "scenarios.json").read_text(encoding="utf-8"))
    for entry in scenarios["local_codes"]:
        assert catalog.classify_coding(entry["system"], entry["code"]), entry
    assert catalog.local_scale("http://hospital.example.cn/CodeSystem/assessment", "RHEUM-MMT8") == (0, 150)


@pytest.mark.parametrize("doc, message", [
    ({"site": "x", "codes": [{"concept": "ck", "system": LAB, "code": "A", "unit": 5}]},
     "codes[0] (concept 'ck'): 'unit' must be a string"),
    ({"site": "x", "codes": [{"concept": "ck", "system": LAB, "code": "A"},
                             {"concept": "nope", "system": LAB, "code": "B"}]},
     "codes[1] (concept 'nope'): unknown concept id 'nope'"),
    ({"site": "x", "codes": [{"concept": "ck", "system": LAB}]},
     "codes[0] (concept 'ck'): needs exactly one of 'code' or 'prefix'"),
    ({"site": "x", "codes": [{"concept": "ck", "system": LAB, "code": "A", "scale": [0, 10]}]},
     "codes[0] (concept 'ck'): 'scale' is for scores"),
    ({"site": "x", "codes": [{"concept": "ck", "system": "http://loinc.org", "code": "1742-6"}]},
     "codes[0] (concept 'ck'): code http://loinc.org|1742-6 also maps to 'alt'"),
    ({"site": "x", "codes": [{"concept": "ck", "system": LAB, "code": "A"},
                             {"concept": "ldh", "system": LAB, "code": "A"}]},
     "codes[1] (concept 'ldh'): code http://hospital.example.cn/CodeSystem/lab|A also maps to 'ck'"),
    ({"codes": []}, "'site' is a required property"),
    ({"site": "x", "extra": 1}, "Additional properties are not allowed"),
])
def test_invalid_site_files_name_the_file_and_the_entry(tmp_path, doc, message):
    site = write(tmp_path, doc)
    with pytest.raises(ConfigError) as err:
        Catalog.load(site)
    assert str(site) in str(err.value)
    assert message in str(err.value)


def test_shared_on_purpose_is_allowed(tmp_path):
    site = write(tmp_path, {"site": "x", "codes": [
        {"concept": "ck", "system": LAB, "code": "A", "shared": True},
        {"concept": "ldh", "system": LAB, "code": "A", "shared": True}]})
    assert {c.id for c in Catalog.load(site).classify_coding(LAB, "A")} == {"ck", "ldh"}


def test_unreadable_site_files(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        Catalog.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad\.json: not valid JSON"):
        Catalog.load(bad)


def copy_catalog(tmp_path: Path, edit) -> Path:
    folder = tmp_path / "concepts"
    folder.mkdir()
    for p in (data_dir("mappings") / "concepts").glob("*.json"):
        doc = json.loads(p.read_text(encoding="utf-8"))
        edit(p.name, doc)
        (folder / p.name).write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    return folder


def test_invalid_catalog_entry_names_file_and_entry(tmp_path):
    def edit(name, doc):
        if name == "labs.json":
            doc["concepts"][0]["unit"] = 3
    with pytest.raises(ConfigError) as err:
        read_catalog(copy_catalog(tmp_path, edit))
    assert "labs.json: concepts[0] (id 'ck'): 'unit' must be a string" in str(err.value)


def _extra(concept_id: str) -> dict:
    return {"id": concept_id, "display": "again", "kind": "quantity", "unit": "U/L", "codes": [
        {"system": "http://loinc.org", "code": "2157-6", "status": "VERIFIED", "source": "test"}]}


def test_duplicate_ids_across_files(tmp_path):
    def edit(name, doc):
        if name == "vitals.json":
            doc["concepts"].append(_extra("ck"))
    with pytest.raises(ConfigError, match=r"vitals.json: concepts\[2\] \(id 'ck'\): duplicate concept id"):
        read_catalog(copy_catalog(tmp_path, edit))


def test_same_code_for_two_concepts_of_one_kind(tmp_path):
    def edit(name, doc):
        if name == "vitals.json":
            doc["concepts"].append(_extra("ck-copy"))
    with pytest.raises(ConfigError) as err:
        read_catalog(copy_catalog(tmp_path, edit))
    assert "(id 'ck-copy').codes[0]: code http://loinc.org|2157-6 also maps to 'ck'" in str(err.value)
