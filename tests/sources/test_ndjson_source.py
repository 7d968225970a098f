"""Bulk Data NDJSON: interleaved patients grouped into records, on one or two cores, with bad lines named."""

from __future__ import annotations

import gzip
import logging
from pathlib import Path

import orjson
import pytest

from fhir_adapter.errors import SourceError
from fhir_adapter.sources import open_source, reading
from fhir_adapter.sources.ndjson import NdjsonSource
from fhir_adapter.sources.reading import Unit, _lines, _units

TAG = {"system": "http://fhir-adapter.org/fhir/CodeSystem/adapter-tag", "code": "derived"}


def obs(oid: str, pid: str, code: str = "2157-6", value: float = 100, status: str = "final", **extra) -> dict:
    return {"resourceType": "Observation", "id": oid, "status": status,
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": "2026-01-02",
            "valueQuantity": {"value": value, "unit": "U/L", "system": "http://unitsofmeasure.org", "code": "U/L"},
            **extra}


def patient(pid: str) -> dict:
    return {"resourceType": "Patient", "id": pid, "birthDate": "1980-05-01", "gender": "female"}


def condition(cid: str, pid: str, verification: str = "confirmed") -> dict:
    return {"resourceType": "Condition", "id": cid,
            "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                                               "code": verification}]},
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "396230008"}]},
            "subject": {"reference": f"Patient/{pid}"}}


def write(path: Path, lines: list[object]) -> Path:
    path.write_bytes(b"".join((x if isinstance(x, bytes) else orjson.dumps(x)) + b"\n" for x in lines))
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Three patients interleaved over the files, as $export writes them, with the usual faults."""
    d = tmp_path / "export"
    d.mkdir()
    write(d / "Patient.ndjson", [patient("p1"), patient("p2"), patient("p3")])
    write(d / "Observation.ndjson", [
        obs("o1", "p1"), obs("o2", "p2"), obs("o3", "p1", status="entered-in-error", value=9999),
        b"{this is not json",                                               # line 4
        obs("o4", "p3"), obs("o5", "ghost"),                                # o5: dangling subject
        {"resourceType": "Observation", "id": "o6", "status": "final"},     # line 7: no subject
        obs("o7", "p2", meta={"tag": [TAG]}),                               # written by the adapter
        ["not", "an", "object"],                                            # line 9
        {"resourceType": "Foo", "id": "x"},                                 # line 10: unknown type
        obs("o8", "p2", value=1, meta={"lastUpdated": "2026-01-01T00:00:00Z"}),
        obs("o8", "p2", value=2, meta={"lastUpdated": "2026-02-01T00:00:00Z"}),  # duplicate: this one wins
        b"",                                                                # blank lines are not resources
        b'{ "resourceType" : "Observation", "id": "o9", "status": "final", "subject" : { "reference" : '
        b'"http://hospital.example/fhir/Patient/p3/_history/2" } }',          # spaced JSON, absolute URL
        obs("o10", "p1", subject={"identifier": {"value": "x"}, "reference": "Patient/p1"}),  # nested element
    ])
    with gzip.open(d / "Condition.ndjson.gz", "wb") as f:
        f.write(orjson.dumps(condition("c1", "p1")) + b"\n" + orjson.dumps(condition("c2", "p2", "refuted")) + b"\n")
    write(d / "Practitioner.ndjson", [{"resourceType": "Practitioner", "id": "dr1"}])
    write(d / "Medication.ndjson", [{"resourceType": "Medication", "id": "m1",
                                     "code": {"text": "prednisone 5 mg tablet"}}])
    write(d / "MedicationStatement.ndjson", [{
        "resourceType": "MedicationStatement", "id": "ms1", "status": "active",
        "medicationReference": {"reference": "Medication/m1"}, "subject": {"reference": "Patient/p1"},
        "contained": [{"resourceType": "Medication", "id": "inner", "code": {"text": "x"}}]}])
    return d


def by_patient(source: NdjsonSource, **kw) -> dict:
    return {r.patient_id: r for r in source.records(**kw)}


def test_groups_interleaved_resources_by_patient(folder: Path) -> None:
    records = by_patient(NdjsonSource(folder, workers=1))
    assert sorted(records) == ["p1", "p2", "p3"]
    p1, p2, p3 = records["p1"], records["p2"], records["p3"]
    assert sorted(o["id"] for o in p1.of("Observation")) == ["o1", "o10"]
    assert [c["id"] for c in p1.of("Condition")] == ["c1"]
    assert [o["id"] for o in p2.of("Observation")] == ["o2", "o8"]
    assert p2.of("Observation")[1]["valueQuantity"]["value"] == 2  # the copy updated last
    assert sorted(o["id"] for o in p3.of("Observation")) == ["o4", "o9"]
    assert not p2.holds("Condition")  # its only Condition is refuted
    statement = p1.of("MedicationStatement")[0]
    assert p1.resolve(statement["medicationReference"])["code"]["text"] == "prednisone 5 mg tablet"
    assert p1.resolve({"reference": "#inner"}, within=statement)["id"] == "inner"


def test_not_data_is_set_aside_and_counted(folder: Path) -> None:
    source = NdjsonSource(folder, workers=1)
    records = by_patient(source)
    assert [s.reference for s in records["p1"].set_aside] == ["Observation/o3"]
    assert records["p1"].set_aside[0].reason == "status entered-in-error"
    assert [s.reference for s in records["p2"].set_aside] == ["Condition/c2"]
    assert source.report.set_aside["Observation status entered-in-error"] == 1
    assert source.report.set_aside["Condition verificationStatus refuted"] == 1
    assert source.report.set_aside["Observation written by fhir-adapter"] == 1
    assert all(o["id"] != "o7" for r in records.values() for o in r.of("Observation"))


def test_bad_lines_are_skipped_with_file_and_line(folder: Path, caplog: pytest.LogCaptureFixture) -> None:
    source = NdjsonSource(folder, workers=1)
    with caplog.at_level(logging.WARNING, logger="fhir_adapter.sources"):
        by_patient(source)
    skipped = source.report.skipped
    assert skipped["not JSON"] == 1
    assert skipped["not a FHIR resource"] == 1
    assert skipped["unknown resourceType"] == 1
    assert skipped["no patient reference"] == 1
    assert skipped["subject Patient not in the source"] == 1
    assert skipped["duplicate id"] == 1
    assert skipped["Practitioner not used by any criterion"] == 1
    text = caplog.text
    assert "Observation.ndjson line 4" in text and "not JSON" in text
    assert "Observation.ndjson line 7" in text and "no subject reference to a Patient" in text
    assert "Observation.ndjson line 9" in text
    assert "Observation.ndjson line 10" in text and "unknown resourceType 'Foo'" in text
    assert "Observation/o5 (Observation.ndjson line 6): subject Patient/ghost is not in the source" in text
    # every line is accounted for: used, set aside or skipped
    report = source.report
    total = sum(report.read.values()) + sum(report.set_aside.values()) + report.total_skipped
    lines = sum(1 for f in folder.iterdir()
                for line in (gzip.decompress(f.read_bytes()) if f.suffix == ".gz" else f.read_bytes()).split(b"\n")
                if line.strip())
    assert total == lines


def test_two_workers_and_small_buckets_give_the_same_records(folder: Path) -> None:
    one = by_patient(NdjsonSource(folder, workers=1))
    source = NdjsonSource(folder, workers=2, bucket_bytes=200)
    many = {r.patient_id: r for r in source.map_records(lambda r: r, workers=2)}
    assert {k: v.resources for k, v in one.items()} == {k: v.resources for k, v in many.items()}
    assert source.report.skipped["not JSON"] == 1


def test_patient_filter_reads_only_those_patients(folder: Path) -> None:
    records = by_patient(NdjsonSource(folder, workers=1), patients=["p3"])
    assert list(records) == ["p3"]


def test_open_source_dispatches_on_folders_and_files(folder: Path, tmp_path: Path) -> None:
    assert isinstance(open_source(str(folder)), NdjsonSource)
    assert isinstance(open_source(str(folder / "Patient.ndjson")), NdjsonSource)
    assert isinstance(open_source("sample"), NdjsonSource)
    with pytest.raises(SourceError, match="no such file"):
        open_source(str(tmp_path / "missing"))
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("x")
    with pytest.raises(SourceError):
        NdjsonSource(empty)


def test_resources_streams_every_readable_resource(folder: Path) -> None:
    source = NdjsonSource(folder)
    types = [r["resourceType"] for r, _ in source.resources(types={"Patient", "Condition"})]
    assert sorted(types) == ["Condition", "Condition", "Patient", "Patient", "Patient"]
    assert source.report.skipped["not JSON"] == 1


@pytest.mark.parametrize("size", [1, 2, 3, 7, 50, 10_000])
def test_byte_ranges_split_lines_exactly_once(tmp_path: Path, size: int) -> None:
    """Whatever the range size, each line is read by exactly one range, whole, in order."""
    lines = [b'{"a":%d,"pad":"%s"}' % (i, b"x" * (i * 7 % 23)) for i in range(40)] + [b"", b"last"]
    f = tmp_path / "x.ndjson"
    f.write_bytes(b"\n".join(lines))  # no final newline
    units = _units([f], workers=1, unit_bytes=size)
    got = [line for u in units for line in _lines(f, u)]
    assert got == lines
    assert all(isinstance(u, Unit) for u in units)


@pytest.mark.parametrize("chunk", [1, 4, 16, 1 << 20])
@pytest.mark.parametrize("gz", [False, True])
def test_reads_of_any_size_give_whole_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int,
                                            gz: bool) -> None:
    """Lines longer than the read buffer grow it; a tail longer than what precedes it moves intact."""
    monkeypatch.setattr(reading, "_CHUNK", chunk)
    lines = [b"x" * (i * 13 % 61) + b"%d" % i for i in range(60)] + [b"", b"", b"y" * 200, b"z"]
    f = tmp_path / ("x.ndjson.gz" if gz else "x.ndjson")
    data = b"\n".join(lines) + b"\n"
    f.write_bytes(gzip.compress(data) if gz else data)
    units = _units([f], workers=1, unit_bytes=None if gz else 97)
    assert [line for u in units for line in _lines(f, u)] == lines
