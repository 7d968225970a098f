"""A Bundle file that cannot be parsed to its end: its patients are not screened from it (named, counted, exit
status 3) rather than screened on part of a record; the other files go on."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import orjson
import pytest

from fhir_adapter.sources.bundle import BundleSource
from tests.sources.test_bundle_source import entry, obs, patient, write_bundle
from tests.test_cli import run_cli

SCREEN = ("screen", "--study", "NCT07377058", "--as-of", "2026-06-30")


def folder(tmp_path: Path, fault: bytes | None) -> Path:
    """a.json: p1 whole. b.json: one more of p1's Observations, then p2, then ``fault`` (raw text standing in for a
    value), then p4's entries. c.json: p3 whole."""
    tmp_path.mkdir(exist_ok=True)
    d = tmp_path / "bundles"
    d.mkdir()
    write_bundle(d / "a.json", "collection", [entry(patient("p1")), entry(obs("o1", "Patient/p1"))])
    write_bundle(d / "b.json", "collection", [
        entry(obs("o9", "Patient/p1")), entry(patient("p2")), entry(obs("o2", "Patient/p2", value=7)),
        entry(obs("o3", "Patient/p2", value=8)), entry(patient("p4")), entry(obs("o4", "Patient/p4"))])
    if fault is not None:
        text = (d / "b.json").read_bytes()
        at = text.index(b'"value": 8') + len(b'"value": ')  # o3's value
        (d / "b.json").write_bytes(text[:at] + fault + text[at + 1:])
    write_bundle(d / "c.json", "collection", [entry(patient("p3")), entry(obs("o5", "Patient/p3"))])
    return d


FAULTS = {
    "cut short": None,  # see below: the file ends inside o3
    "integer past 64 bits": b"18446744073709551616",
    "Infinity": b"Infinity",
    "NaN": b"NaN",
    "garbage": b"8 oops",
}


@pytest.mark.parametrize("fault", list(FAULTS), ids=list(FAULTS))
def test_patients_of_a_broken_file_are_not_screened(tmp_path: Path, fault: str) -> None:
    whole = {r.patient_id: r for r in BundleSource(folder(tmp_path / "whole", None)).records()}
    assert sorted(whole) == ["p1", "p2", "p3", "p4"]  # the folder without the fault
    assert [o["id"] for o in whole["p1"].of("Observation")] == ["o1", "o9"]
    d = folder(tmp_path, FAULTS[fault])
    if fault == "cut short":
        text = (d / "b.json").read_bytes()
        (d / "b.json").write_bytes(text[: text.index(b'"value": 8') + 5])
    src = BundleSource(d)
    records = {r.patient_id: r for r in src.records()}
    # p1 has an entry in b.json, p2 straddles the fault: neither is screened; p4 lies beyond it, lost with the
    # rest of the file; p3 is in another file
    assert sorted(records) == ["p3"]
    assert records["p3"].count() == 1
    assert src.report.not_read == {"Bundle file broken off": 2}
    assert src.report.patients_not_read == 2
    assert "b.json" in src.report.not_read_example["Bundle file broken off"]


def test_the_command_line_says_the_run_is_incomplete(tmp_path: Path) -> None:
    d = folder(tmp_path, b"Infinity")
    for command in (["records"], list(SCREEN)):
        done = run_cli(*command, "--source", str(d))
        assert done.returncode == 3, done.stderr
        assert [orjson.loads(x)["patient"] for x in done.stdout.splitlines()] == ["Patient/p3"]
        assert "INCOMPLETE: 2 patients could not be read whole" in done.stderr
        assert "Patient/p1 not read (b.json): its Bundle breaks off: not valid JSON after entry 2" in done.stderr
    clean = run_cli("records", "--source", str(folder(tmp_path / "x", None)))
    assert clean.returncode == 0, clean.stderr


def test_a_broken_file_whose_patients_cannot_be_told(tmp_path: Path) -> None:
    """A Bundle that breaks off before any whole entry: its patients are unknown, and the run is incomplete. Files
    that are no Bundle at all (not JSON, a gzip stream cut short) are skipped and named, as before."""
    write_bundle(tmp_path / "a.json", "collection", [entry(patient("p1"))])
    (tmp_path / "b.json").write_text('{"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {"reso')
    (tmp_path / "c.json").write_text("this is not JSON at all\n")
    (tmp_path / "d.json.gz").write_bytes(gzip.compress(b"this is not JSON either\n")[:-6])
    src = BundleSource(tmp_path)
    assert [r.patient_id for r in src.records()] == ["p1"]
    assert src.report.patients_not_read == 1
    assert "its patients are unknown" in src.report.not_read_example["not JSON"]
    assert src.report.skipped == {"not JSON": 2}


def test_a_bundle_over_the_size_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A plain file over the limit is not opened; a gzip file is read up to the limit, and the patients met before
    it are not screened."""
    big = [entry(patient("p2"))] + [entry(obs(f"o{i}", "Patient/p2", note=[{"text": "z" * 500}])) for i in range(40)]
    write_bundle(tmp_path / "a.json", "collection", [entry(patient("p1"))])
    write_bundle(tmp_path / "plain.json", "collection", [entry(patient("p3")), *big[1:]])
    raw = json.dumps({"resourceType": "Bundle", "type": "collection", "entry": big}).encode()
    (tmp_path / "packed.json.gz").write_bytes(gzip.compress(raw))
    monkeypatch.setenv("FHIR_ADAPTER_MAX_BUNDLE_BYTES", "16K")
    assert (tmp_path / "a.json").stat().st_size < 16 << 10 < (tmp_path / "plain.json").stat().st_size
    assert (tmp_path / "packed.json.gz").stat().st_size < 16 << 10 < len(raw)
    src = BundleSource(tmp_path)
    assert [r.patient_id for r in src.records()] == ["p1"]
    assert src.report.not_read == {"Bundle over the size limit": 2}  # p2 (named), and plain.json's unknown ones
    text = "\n".join(src.report.not_read_example.values())
    assert "over the limit of 16,384 bytes (FHIR_ADAPTER_MAX_BUNDLE_BYTES)" in text


def test_an_unreadable_entry_goes_to_its_patients_record(tmp_path: Path) -> None:
    """Entries that parse but whose resource cannot be read: dropped, named on their patient's record, the
    patient screened on the rest."""
    f = write_bundle(tmp_path / "b.json", "collection", [
        entry(patient("p1")), entry(obs("ok", "Patient/p1")),
        entry(obs("bad-meta", "Patient/p1", meta=True)),
        entry({"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"},
               "code": {"coding": {"system": "http://snomed.info/sct", "code": "396230008"}}}),
        entry({"resourceType": "Observation", "id": ["x"], "subject": {"reference": "Patient/p1"}}),
        entry(patient("p2")), entry(obs("fine", "Patient/p2")),
    ])
    src = BundleSource(f)
    records = {r.patient_id: r for r in src.records()}
    assert [o["id"] for o in records["p1"].of("Observation")] == ["ok"]
    assert [(u.resource_type, u.where) for u in records["p1"].unreadable] == [
        ("Observation", "b.json entry 2"), ("Condition", "b.json entry 3"), ("Observation", "b.json entry 4")]
    assert "Condition.code.coding is an object, not a list" in records["p1"].unreadable[1].reason
    assert records["p2"].unreadable == [] and records["p2"].count() == 1
    assert src.report.patients_not_read == 0


def test_an_unreadable_patient_entry_is_a_patient_not_read(tmp_path: Path) -> None:
    f = write_bundle(tmp_path / "b.json", "collection", [
        entry({**patient("p1"), "birthDate": ["1980"]}), entry(obs("o1", "Patient/p1")),
        entry(patient("p2")),
    ])
    src = BundleSource(f)
    assert [r.patient_id for r in src.records()] == ["p2"]
    assert src.report.not_read == {"Patient resource unreadable": 1}
    assert "Patient.birthDate is a list, not a string" in src.report.not_read_example["Patient resource unreadable"]


def test_spilled_groups_keep_unreadable_entries(tmp_path: Path) -> None:
    entries = [entry(patient(f"p{i}")) for i in range(6)]
    entries += [entry(obs(f"o{i}", f"Patient/p{i % 6}", value=i)) for i in range(24)]
    entries += [entry(obs("bad", "Patient/p3", meta=True))]
    f = write_bundle(tmp_path / "big.json", "collection", entries)
    memory = {r.patient_id: r for r in BundleSource(f).records()}
    spilled = {r.patient_id: r for r in BundleSource(f, bucket_bytes=512, workdir=tmp_path / "w").records()}
    assert {k: (v.resources, v.unreadable) for k, v in memory.items()} == \
        {k: (v.resources, v.unreadable) for k, v in spilled.items()}
    assert [u.where for u in spilled["p3"].unreadable] == ["big.json entry 30"]
    assert os.listdir(tmp_path / "w") == []
