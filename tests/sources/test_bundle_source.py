"""FHIR Bundle files: entries streamed, fullUrl aliases resolved, patients grouped, bad entries named."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from fhir_adapter.errors import SourceError
from fhir_adapter.record.patient_record import PatientRecord, SetAside
from fhir_adapter.sources import open_source
from fhir_adapter.sources.bundle import BundleSource

TAG = {"system": "http://fhir-adapter.org/fhir/CodeSystem/adapter-tag", "code": "derived"}
BASE = "http://hospital.example.org/fhir"
U_PAT = "urn:uuid:0b1c2d3e-0000-4000-8000-000000000001"
U_OBS = "urn:uuid:0b1c2d3e-0000-4000-8000-000000000002"
U_MED = "urn:uuid:0b1c2d3e-0000-4000-8000-000000000003"
U_ENC = "urn:uuid:0b1c2d3e-0000-4000-8000-000000000004"


def patient(pid: str | None) -> dict[str, Any]:
    p = {"resourceType": "Patient", "birthDate": "1980-05-01", "gender": "female"}
    return {**p, "id": pid} if pid else p


def obs(oid: str | None, subject: str | None, value: float = 100, status: str = "final", **extra: Any) -> dict:
    o: dict[str, Any] = {"resourceType": "Observation", "status": status,
                         "code": {"coding": [{"system": "http://loinc.org", "code": "2157-6"}]},
                         "valueQuantity": {"value": value, "unit": "U/L"}, **extra}
    if oid:
        o["id"] = oid
    if subject:
        o["subject"] = {"reference": subject}
    return o


def condition(cid: str, subject: str, verification: str = "confirmed") -> dict[str, Any]:
    return {"resourceType": "Condition", "id": cid, "subject": {"reference": subject},
            "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                                               "code": verification}]},
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "M33.10"}]}}


def entry(resource: dict[str, Any] | None, full_url: str | None = None, method: str | None = None,
          url: str | None = None) -> dict[str, Any]:
    e: dict[str, Any] = {}
    if full_url:
        e["fullUrl"] = full_url
    if resource is not None:
        e["resource"] = resource
    if method:
        e["request"] = {"method": method, "url": url or (resource or {}).get("resourceType", "")}
    return e


def write_bundle(path: Path, btype: str, entries: list[Any]) -> Path:
    path.write_text(json.dumps({"resourceType": "Bundle", "type": btype, "entry": entries}, indent=1))
    return path


def only(records: list[PatientRecord], pid: str) -> PatientRecord:
    found = [r for r in records if r.patient_id == pid]
    assert len(found) == 1, [r.patient_id for r in records]
    return found[0]


def accounted(src: BundleSource) -> int:
    rep = src.report
    return sum(rep.read.values()) + sum(rep.set_aside.values()) + sum(rep.skipped.values())


# -- bundle types and references ----------------------------------------------------------------------


def test_searchset_groups_entries_by_patient(tmp_path: Path) -> None:
    f = write_bundle(tmp_path / "search.json", "searchset", [
        {**entry(patient("p1"), f"{BASE}/Patient/p1"), "search": {"mode": "match"}},
        {**entry(patient("p2"), f"{BASE}/Patient/p2"), "search": {"mode": "match"}},
        {**entry(obs("o1", "Patient/p1"), f"{BASE}/Observation/o1"), "search": {"mode": "include"}},
        {**entry(obs("o2", "Patient/p2"), f"{BASE}/Observation/o2"), "search": {"mode": "include"}},
        entry(obs("o3", "Patient/p1", value=7), f"{BASE}/Observation/o3"),
        entry({"resourceType": "OperationOutcome", "issue": []}),
    ])
    src = BundleSource(f)
    records = list(src.records())
    assert [r.patient_id for r in records] == ["p1", "p2"]
    p1 = only(records, "p1")
    assert [o["id"] for o in p1.of("Observation")] == ["o1", "o3"]
    assert [o["id"] for o in only(records, "p2").of("Observation")] == ["o2"]
    assert src.report.read == {"Patient": 2, "Observation": 3}
    assert src.report.skipped == {"OperationOutcome not used by any criterion": 1}
    assert accounted(src) == 6


def test_transaction_urn_uuid_references_resolve_to_the_patient(tmp_path: Path) -> None:
    """POST entries have no id: the urn uuid becomes the id and every urn reference resolves."""
    enc = {"resourceType": "Encounter", "status": "finished", "subject": {"reference": U_PAT}}
    o = obs(None, U_PAT, encounter={"reference": U_ENC})
    f = write_bundle(tmp_path / "tx.json", "transaction", [
        entry(patient(None), U_PAT, "POST"),
        entry(enc, U_ENC, "POST"),
        entry(o, U_OBS, "POST"),
        entry(None, None, "DELETE", "Observation/old"),
    ])
    src = BundleSource(f)
    (record,) = list(src.records())
    assert record.patient_id == U_PAT.removeprefix("urn:uuid:")
    assert record.resolve({"reference": U_PAT}) is record.patient
    (got,) = record.of("Observation")
    assert got["id"] == U_OBS.removeprefix("urn:uuid:")
    assert record.resolve(got["encounter"]) is record.of("Encounter")[0]
    assert record.resolve({"reference": U_OBS}) is got
    assert src.report.read == {"Patient": 1, "Encounter": 1, "Observation": 1}
    assert src.report.skipped == {"DELETE entry": 1}
    assert "tx.json entry 3" in src.report.example["DELETE entry"]


def test_collection_with_absolute_urls(tmp_path: Path) -> None:
    f = write_bundle(tmp_path / "coll.json", "collection", [
        entry(patient("p9"), f"{BASE}/Patient/p9"),
        entry({"resourceType": "Encounter", "id": "e1", "status": "finished",
               "subject": {"reference": f"{BASE}/Patient/p9"}}, f"{BASE}/Encounter/e1"),
        entry(obs("o1", f"{BASE}/Patient/p9", encounter={"reference": f"{BASE}/Encounter/e1"}),
              f"{BASE}/Observation/o1"),
    ])
    src = BundleSource(f)
    (record,) = list(src.records())
    assert record.patient_id == "p9"
    (o,) = record.of("Observation")
    assert record.resolve(o["encounter"])["id"] == "e1"
    assert record.resolve({"reference": f"{BASE}/Patient/p9"}) is record.patient


def test_contained_and_shared_medications_resolve(tmp_path: Path) -> None:
    statement = {"resourceType": "MedicationStatement", "id": "ms1", "status": "active",
                 "contained": [{"resourceType": "Medication", "id": "med1",
                                "code": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                     "code": "5640"}]}}],
                 "medicationReference": {"reference": "#med1"}, "subject": {"reference": "Patient/p1"}}
    request = {"resourceType": "MedicationRequest", "id": "mr1", "status": "active", "intent": "order",
               "medicationReference": {"reference": "Medication/x"}, "subject": {"reference": "Patient/p1"}}
    by_urn = {"resourceType": "MedicationRequest", "id": "mr2", "status": "active", "intent": "order",
              "medicationReference": {"reference": U_MED}, "subject": {"reference": "Patient/p1"}}
    f = write_bundle(tmp_path / "meds.json", "collection", [
        entry(patient("p1")), entry(statement), entry(request), entry(by_urn),
        entry({"resourceType": "Medication", "id": "x", "code": {"text": "tacrolimus 1 MG"}}),
        entry({"resourceType": "Medication", "code": {"text": "mycophenolate 500 MG"}}, U_MED),
    ])
    src = BundleSource(f)
    (record,) = list(src.records())
    (ms,) = record.of("MedicationStatement")
    assert record.resolve({"reference": "#med1"}, within=ms)["code"]["coding"][0]["code"] == "5640"
    assert record.resolve({"reference": "#med1"}) is None  # only within its container
    mr1, mr2 = record.of("MedicationRequest")
    assert record.resolve(mr1["medicationReference"])["code"]["text"] == "tacrolimus 1 MG"
    assert record.resolve(mr2["medicationReference"])["code"]["text"] == "mycophenolate 500 MG"
    assert src.report.read["Medication"] == 2
    assert accounted(src) == 6


# -- statuses and tags -----------------------------------------------------------------------------------


def test_not_data_is_set_aside_and_adapter_output_not_read(tmp_path: Path) -> None:
    f = write_bundle(tmp_path / "b.json", "searchset", [
        entry(patient("p1")),
        entry(obs("ok", "Patient/p1")),
        entry(obs("err", "Patient/p1", status="entered-in-error", value=9999)),
        entry(condition("c-refuted", "Patient/p1", "refuted")),
        entry(condition("c-ok", "Patient/p1")),
        entry(obs("mine", "Patient/p1", meta={"tag": [TAG]})),
    ])
    src = BundleSource(f)
    (record,) = list(src.records())
    assert [o["id"] for o in record.of("Observation")] == ["ok"]
    assert [c["id"] for c in record.of("Condition")] == ["c-ok"]
    assert set(record.set_aside) == {SetAside("Observation/err", "status entered-in-error"),
                                     SetAside("Condition/c-refuted", "verificationStatus refuted")}
    assert src.report.set_aside == {"Observation status entered-in-error": 1,
                                    "Condition verificationStatus refuted": 1,
                                    "Observation written by fhir-adapter": 1}
    assert accounted(src) == 6


def test_duplicate_id_keeps_the_copy_updated_last(tmp_path: Path) -> None:
    f = write_bundle(tmp_path / "dup.json", "collection", [
        entry(patient("p1")),
        entry(obs("o1", "Patient/p1", value=2, meta={"lastUpdated": "2026-02-01T00:00:00Z"})),
        entry(obs("o1", "Patient/p1", value=1, meta={"lastUpdated": "2026-01-01T00:00:00Z"})),
    ])
    src = BundleSource(f)
    (record,) = list(src.records())
    assert [o["valueQuantity"]["value"] for o in record.of("Observation")] == [2]
    assert src.report.skipped == {"duplicate id": 1}
    assert "dup.json entry 2" in src.report.example["duplicate id"]


# -- bad input -------------------------------------------------------------------------------------------


def test_bad_entries_are_skipped_with_file_and_entry(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    f = write_bundle(tmp_path / "bad.json", "collection", [
        entry(patient("p1")),                                              # 0
        entry({"resourceType": "Foo", "id": "x"}),                          # 1 unknown type
        entry(obs("nosubj", None)),                                        # 2 no subject
        entry(obs("ghost", "Patient/ghost")),                              # 3 dangling
        entry(obs("grp", "Group/g1")),                                     # 4 not a Patient
        entry(obs("urn", "urn:uuid:99999999-0000-4000-8000-000000000000")),  # 5 no such fullUrl
        entry(["not", "a", "resource"]),                                   # 6
        {"fullUrl": "urn:uuid:nothing-here"},                              # 7 no resource
        "just a string",                                                   # 8
        entry({"resourceType": "Practitioner", "id": "dr1"}),              # 9 quiet
        entry(obs("fine", "Patient/p1")),                                  # 10
    ])
    caplog.set_level(logging.WARNING, logger="fhir_adapter.sources")
    src = BundleSource(f)
    (record,) = list(src.records())
    assert [o["id"] for o in record.of("Observation")] == ["fine"]
    skipped = src.report.skipped
    assert skipped == {"unknown resourceType": 1, "no patient reference": 1,
                       "subject Patient not in the source": 2, "subject is not a Patient": 1,
                       "not a FHIR resource": 2, "entry without resource": 1,
                       "Practitioner not used by any criterion": 1}
    assert accounted(src) == 11
    ex = src.report.example
    assert "bad.json entry 1" in ex["unknown resourceType"] and "'Foo'" in ex["unknown resourceType"]
    assert "bad.json entry 2" in ex["no patient reference"]
    assert "bad.json entry 4" in ex["subject is not a Patient"] and "Group/g1" in ex["subject is not a Patient"]
    assert "bad.json entry 7" in ex["entry without resource"]
    messages = "\n".join(caplog.messages)
    for i in (1, 2, 3, 4, 5, 6, 7, 8):
        assert f"bad.json entry {i})" in messages
    assert "entry 9" not in messages  # quiet: not used by any criterion


def test_non_json_file_in_a_folder_does_not_stop_the_others(tmp_path: Path) -> None:
    write_bundle(tmp_path / "a.json", "collection", [entry(patient("p1")), entry(obs("o1", "Patient/p1"))])
    (tmp_path / "b.json").write_text("this is not JSON at all\n")
    (tmp_path / "c.json").write_text(json.dumps(patient("p3")))  # a resource, not a Bundle
    write_bundle(tmp_path / "d.json", "collection", [entry(patient("p4"))])
    src = BundleSource(tmp_path)
    assert [r.patient_id for r in src.records()] == ["p1", "p4"]
    assert src.report.skipped == {"not JSON": 1, "not a Bundle": 1}
    assert "(b.json)" in src.report.example["not JSON"]
    assert "(c.json)" in src.report.example["not a Bundle"] and "'Patient'" in src.report.example["not a Bundle"]


def test_truncated_file_is_not_half_read(tmp_path: Path) -> None:
    """A patient whose entries straddle the break gets no result (never one on part of its record), and says so."""
    f = write_bundle(tmp_path / "cut.json", "searchset", [
        entry(patient("p1")), entry(obs("o1", "Patient/p1")), entry(obs("o2", "Patient/p1")),
        entry(obs("o3", "Patient/p1")), entry(obs("o4", "Patient/p1")),
    ])
    text = f.read_text()
    f.write_text(text[: text.index('"o3"') + 10])  # cut inside entry 3
    src = BundleSource(f)
    assert list(src.records()) == []
    assert src.report.not_read == {"Bundle file broken off": 1}
    message = src.report.not_read_example["Bundle file broken off"]
    assert message.startswith("Patient/p1 not read (cut.json)")
    assert "after entry 2" in message and "rest of the file is not read" in message and "right here" not in message
    assert src.report.read == {}  # nothing of it was used
    # resources() streams the entries before the break, and reports the break
    assert [w for _, w in src.resources()] == ["cut.json entry 0", "cut.json entry 1", "cut.json entry 2"]
    assert src.report.skipped == {"not JSON": 1}


def test_subject_that_is_a_patient_elsewhere_in_the_folder(tmp_path: Path) -> None:
    """Pages of one search: a patient's resources may sit in another file than its Patient."""
    write_bundle(tmp_path / "page1.json", "searchset", [entry(patient("p1")), entry(obs("o1", "Patient/p1"))])
    write_bundle(tmp_path / "page2.json", "searchset", [entry(obs("o2", "Patient/p1"))])
    (record,) = list(BundleSource(tmp_path).records())
    assert [o["id"] for o in record.of("Observation")] == ["o1", "o2"]


# -- interface --------------------------------------------------------------------------------------------


def big_bundle(path: Path, patients: int = 12) -> Path:
    entries = []
    for i in range(patients):
        entries.append(entry(patient(f"p{i:02d}")))
    for i in range(patients * 3):
        entries.append(entry(obs(f"o{i}", f"Patient/p{i % patients:02d}", value=i)))
    entries.append(entry(obs("lost", "Patient/nobody")))
    return write_bundle(path, "collection", entries)


def test_spilling_to_disk_gives_the_same_records(tmp_path: Path) -> None:
    f = big_bundle(tmp_path / "big.json")
    in_memory = BundleSource(f)
    spilled = BundleSource(f, bucket_bytes=512, workdir=tmp_path / "work")
    assert spilled._buckets() > 1
    a = [(r.patient_id, r.patient, r.resources) for r in in_memory.records()]
    records = spilled.records()
    b = [(r.patient_id, r.patient, r.resources) for r in [next(records)]]
    assert list((tmp_path / "work").rglob("b*.ndjson"))  # the groups went to disk
    b += [(r.patient_id, r.patient, r.resources) for r in records]
    assert sorted(a, key=lambda x: x[0]) == sorted(b, key=lambda x: x[0])
    assert len(a) == 12 and all(len(res["Observation"]) == 3 for _, _, res in a)
    assert in_memory.report.as_dict() == spilled.report.as_dict()
    assert in_memory.report.skipped == {"subject Patient not in the source": 1}
    assert list((tmp_path / "work").iterdir()) == []  # temporary buckets removed


def test_records_for_some_patients_and_resources_by_type(tmp_path: Path) -> None:
    f = big_bundle(tmp_path / "big.json")
    src = BundleSource(f, name="trial")
    (r,) = list(src.records(["p03"]))
    assert r.patient_id == "p03" and r.source == "trial"
    assert [o["valueQuantity"]["value"] for o in r.of("Observation")] == [3, 15, 27]
    streamed = list(BundleSource(f).resources({"Patient"}))
    assert [p["id"] for p, _ in streamed] == [f"p{i:02d}" for i in range(12)]
    assert streamed[3][1] == "big.json entry 3"


def test_open_source_and_errors(tmp_path: Path) -> None:
    f = write_bundle(tmp_path / "one.json", "document", [entry(patient("p1"))])
    assert isinstance(open_source(str(f)), BundleSource)
    assert isinstance(open_source(str(tmp_path)), BundleSource)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no Bundle files"):
        BundleSource(tmp_path / "empty")
    with pytest.raises(SourceError, match="no such file"):
        BundleSource(tmp_path / "missing.json")


def test_gzip_bundle(tmp_path: Path) -> None:
    import gzip

    raw = json.dumps({"resourceType": "Bundle", "type": "collection",
                      "entry": [entry(patient("p1")), entry(obs("o1", "Patient/p1"))]})
    (tmp_path / "b.json.gz").write_bytes(gzip.compress(raw.encode()))
    (record,) = list(BundleSource(tmp_path).records())
    assert record.count() == 1
