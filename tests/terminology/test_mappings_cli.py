"""``fhir-adapter mappings check | concepts | unmapped``: output and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from fhir_adapter.cli.main import main
from tests.test_cli import run_cli

LAB = "http://hospital.example.cn/CodeSystem/lab"
SAMPLE_SITE = Path(__file__).resolve().parents[2] / "fhir_adapter" / "sample" / "site-mappings.json"


def ndjson(path: Path, resources: list[dict]) -> None:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in resources))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A small NDJSON export: a local lab code, a LOINC code, an unknown unit string, a text-only condition."""
    data = tmp_path / "export"
    data.mkdir()
    ndjson(data / "Patient.ndjson", [{"resourceType": "Patient", "id": "p1"}])
    ndjson(data / "Observation.ndjson", [
        {"resourceType": "Observation", "id": "o1", "status": "final", "subject": {"reference": "Patient/p1"},
         "code": {"coding": [{"system": LAB, "code": "CHEM-CK", "display": "肌酸激酶"}]},
         "valueQuantity": {"value": 300, "unit": "U/L", "system": "http://unitsofmeasure.org", "code": "U/L"}},
        {"resourceType": "Observation", "id": "o2", "status": "final", "subject": {"reference": "Patient/p1"},
         "code": {"coding": [{"system": LAB, "code": "CHEM-CK", "display": "肌酸激酶"}]},
         "valueQuantity": {"value": 5, "unit": "glorbs per jar"}},
        {"resourceType": "Observation", "id": "o3", "status": "final", "subject": {"reference": "Patient/p1"},
         "code": {"coding": [{"system": "http://loinc.org", "code": "2276-4"}]},
         "valueQuantity": {"value": 500, "unit": "ng/mL"}},
        {"resourceType": "Observation", "id": "o4", "status": "final", "subject": {"reference": "Patient/p1"},
         "code": {"coding": [{"system": "http://loinc.org", "code": "107563-9"}]},
         "valueCodeableConcept": {"coding": [{"system": LAB, "code": "WEIRD"}], "text": "weird"}},
    ])
    ndjson(data / "Condition.ndjson", [
        {"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"},
         "code": {"text": "Gottron's papules"}},
        {"resourceType": "Condition", "id": "c2", "subject": {"reference": "Patient/p1"},
         "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "M33.13"}]}},
    ])
    return data


def test_unmapped_lists_local_codes_and_unknown_units(folder, capsys):
    assert main(["mappings", "unmapped", "--source", str(folder), "--format", "json"]) == 0
    result = json.loads(capsys.readouterr().out)
    codes = {(r["field"], r["system"], r["code"]): r for r in result["codes"]}
    assert codes[("Observation.code", LAB, "CHEM-CK")]["count"] == 2
    assert codes[("Observation.code", LAB, "CHEM-CK")]["example"] == "肌酸激酶"
    assert ("Observation.valueCodeableConcept", LAB, "WEIRD") in codes
    assert codes[("Condition.code", "", "")]["example"] == "Gottron's papules"
    assert not any(r["code"] in ("2276-4", "107563-9", "M33.13") for r in result["codes"])
    units = {r["unit"]: r for r in result["units"]}
    assert set(units) == {"glorbs per jar"}
    assert units["glorbs per jar"]["count"] == 1


def test_unmapped_with_a_site_file(folder, tmp_path, capsys):
    site = tmp_path / "site.json"
    site.write_text(json.dumps({"site": "t", "units": {"glorbs per jar": "U/L"},
                                "codes": [{"concept": "ck", "system": LAB, "code": "CHEM-CK"}]}), encoding="utf-8")
    assert main(["mappings", "unmapped", "--source", str(folder), "--site", str(site), "--format", "json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["site"] == "t"
    assert not any(r["code"] == "CHEM-CK" for r in result["codes"])
    assert result["units"] == []


def test_unmapped_leaves_out_drug_products_the_screen_reads(tmp_path, capsys):
    """A Medication known only by its coded ingredient, and a product whose unknown local code carries an RxNorm
    product name, are read as their ingredient: nothing to map. A product name that names no catalog drug is
    listed."""
    rx = "http://www.nlm.nih.gov/research/umls/rxnorm"
    formulary = "http://hospital.example/formulary"
    data = tmp_path / "export"
    data.mkdir()
    ndjson(data / "Patient.ndjson", [{"resourceType": "Patient", "id": "p1"}])
    ndjson(data / "Medication.ndjson", [{"resourceType": "Medication", "id": "m1", "code": {"text": "醋酸泼尼松片 5mg"},
                                         "ingredient": [{"itemCodeableConcept": {"coding": [{"system": rx,
                                                                                             "code": "8640"}]}}]}])
    ndjson(data / "MedicationStatement.ndjson", [
        {"resourceType": "MedicationStatement", "id": "s1", "status": "active", "subject": {"reference": "Patient/p1"},
         "medicationReference": {"reference": "Medication/m1"}},
        {"resourceType": "MedicationStatement", "id": "s2", "status": "active", "subject": {"reference": "Patient/p1"},
         "medicationCodeableConcept": {"coding": [{"system": formulary, "code": "F-1",
                                                   "display": "tofacitinib 5 MG Oral Tablet"}]}},
        {"resourceType": "MedicationStatement", "id": "s3", "status": "active", "subject": {"reference": "Patient/p1"},
         "medicationCodeableConcept": {"coding": [{"system": formulary, "code": "F-2",
                                                   "display": "omeprazole 20 MG Delayed Release Oral Capsule"}]}},
    ])
    assert main(["mappings", "unmapped", "--source", str(data), "--format", "json"]) == 0
    listed = {(r["field"], r["code"]) for r in json.loads(capsys.readouterr().out)["codes"]}
    assert listed == {("MedicationStatement.medicationCodeableConcept", "F-2")}


def test_unmapped_table_on_the_sample_with_its_site_file():
    done = run_cli("mappings", "unmapped", "--source", "sample", "--site", str(SAMPLE_SITE))
    assert done.returncode == 0, done.stderr
    assert "unmapped codes" in done.stdout and "omeprazole" in done.stdout  # not a study drug
    assert "CHEM-CK" not in done.stdout


def test_unmapped_missing_source_exits_1(tmp_path):
    done = run_cli("mappings", "unmapped", "--source", str(tmp_path / "nope"))
    assert done.returncode == 1 and "no such file or folder" in done.stderr


def test_check_valid_and_invalid(tmp_path, capsys):
    assert main(["mappings", "check", "--site", str(SAMPLE_SITE)]) == 0
    assert "ok:" in capsys.readouterr().out
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"site": "x", "codes": [{"concept": "nope", "system": LAB, "code": "A"},
                                                       {"concept": "ck", "system": LAB, "code": "B", "unit": 1}]}),
                   encoding="utf-8")
    assert main(["mappings", "check", "--site", str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}: codes[1] (concept 'ck'): 'unit' must be a string" in err


def test_check_unknown_concept_exits_1(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"site": "x", "codes": [{"concept": "nope", "system": LAB, "code": "A"}]}),
                   encoding="utf-8")
    done = run_cli("mappings", "check", "--site", str(bad))
    assert done.returncode == 1
    assert "codes[0] (concept 'nope'): unknown concept id 'nope'" in done.stderr


def test_check_catalog_only(capsys):
    assert main(["mappings", "check"]) == 0
    assert "concepts" in capsys.readouterr().out


def test_concepts_lists_ids_kinds_units(capsys):
    assert main(["mappings", "concepts", "--kind", "score"]) == 0
    out = capsys.readouterr().out
    assert "phga-vas" in out and "cm" in out and "tofacitinib" not in out
    assert main(["mappings", "concepts", "--class", "jak-inhibitor", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {"tofacitinib", "baricitinib"} <= {r["id"] for r in rows}
    assert all(r["kind"] == "drug" for r in rows)


def test_records_takes_site(tmp_path):
    done = run_cli("records", "--help")
    assert "--site" in done.stdout


FORMULARY = "http://hospital.example.cn/CodeSystem/formulary"


def drug_export(tmp_path: Path) -> Path:
    """Two patients: local product codes for prednisone (both), an antacid (3 records) and eye drops."""
    data = tmp_path / "drugs"
    data.mkdir()
    ndjson(data / "Patient.ndjson", [{"resourceType": "Patient", "id": p, "gender": "male"} for p in ("p1", "p2")])
    antacid = "铝碳酸镁咀嚼片"
    rows = [("p1", "YP-0107", "醋酸泼尼松片 5mg"), ("p2", "YP-0107", "醋酸泼尼松片 5mg"),
            ("p1", "YP-0300", antacid), ("p1", "YP-0300", antacid), ("p2", "YP-0300", antacid),
            ("p2", "YP-0999", "妥布霉素地塞米松滴眼液")]
    ndjson(data / "MedicationStatement.ndjson", [
        {"resourceType": "MedicationStatement", "id": f"m{i}", "status": "active",
         "subject": {"reference": f"Patient/{p}"}, "effectivePeriod": {"start": "2026-05-01"},
         "medicationCodeableConcept": {"coding": [{"system": FORMULARY, "code": code, "display": display}]}}
        for i, (p, code, display) in enumerate(rows)])
    return data


def test_unmapped_ranks_codes_by_the_results_they_affect(tmp_path, capsys):
    """With --study the codes come ranked by the criterion results their records made unknown (I4 and E12 for
    each patient on the local prednisone code), above a code with more records that no criterion looks for; each
    shows the concept it possibly names; an ignored code is left out."""
    data = drug_export(tmp_path)
    site = tmp_path / "site.json"
    site.write_text(json.dumps({"site": "t", "ignore": [{"system": FORMULARY, "code": "YP-0999",
                                                          "note": "eye drops"}]}), encoding="utf-8")
    assert main(["mappings", "unmapped", "--source", str(data), "--site", str(site), "--study", "NCT07377058",
                 "--as-of", "2026-06-30", "--format", "json"]) == 0
    codes = json.loads(capsys.readouterr().out)["codes"]
    assert [(r["code"], r["count"], r["affected"], r["possibly"]) for r in codes] == [
        ("YP-0107", 2, 4, ["prednisone"]), ("YP-0300", 3, 0, [])]


def test_unmapped_without_a_study_puts_possible_matches_first(tmp_path):
    done = run_cli("mappings", "unmapped", "--source", str(drug_export(tmp_path)))
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines() if FORMULARY in line]
    # the eye drops (tobramycin/dexamethasone) possibly name a glucocorticoid: above the antacid's 3 records
    assert [r[3] for r in rows] == ["YP-0107", "YP-0999", "YP-0300"]
    assert "prednisone" in " ".join(rows[0]) and "dexamethasone" in " ".join(rows[1])
