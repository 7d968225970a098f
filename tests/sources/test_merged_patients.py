"""Merged patients in file sources: a Patient replaced by another (Patient.link) is screened once, under the
surviving record, with the replaced one's resources; the same from an NDJSON folder, one NDJSON file and Bundles."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from fhir_adapter.paths import sample_dir
from fhir_adapter.sources.bundle import BundleSource
from fhir_adapter.sources.ndjson import NdjsonSource
from tests.sources.test_ndjson_source import obs, patient, write
from tests.test_cli import run_cli

SITE = str(sample_dir().parent / "site-mappings.json")
SCREEN = ("screen", "--study", "NCT07377058", "--as-of", "2026-06-30", "--site", SITE)
SPLIT = "mda5-cadm-no-ild"  # its Observations move to a second chart, since merged into this one
OTHERS = ["incl-i5-cni-dose-change", "excl-e6-hcv"]


def subject_of(resource: dict) -> str | None:
    for f in ("subject", "patient"):
        ref = (resource.get(f) or {}).get("reference", "")
        if ref.startswith("Patient/"):
            return ref[8:]
    return None


def sample_of(pids: list[str]) -> dict[str, list[dict]]:
    """The sample's resources of these patients (and every Medication), by file name."""
    out: dict[str, list[dict]] = {}
    for f in sorted(sample_dir().glob("*.ndjson")):
        for line in f.read_bytes().splitlines():
            r = orjson.loads(line)
            if r["resourceType"] == "Medication" or (r.get("id") in pids and r["resourceType"] == "Patient") \
                    or subject_of(r) in pids:
                out.setdefault(f.name, []).append(r)
    return out


def split(files: dict[str, list[dict]], pid: str, moved: str, new_ids: list[str],
          links: list[tuple[str, str, str]]) -> dict[str, list[dict]]:
    """``pid``'s resources of ``moved`` type spread over Patients ``new_ids`` (copies of its Patient), with
    ``links`` (patient, type, other) added."""
    out = {name: [dict(r) for r in rs] for name, rs in files.items()}
    (p,) = [r for r in out["Patient.ndjson"] if r["id"] == pid]
    for new in new_ids:
        out["Patient.ndjson"].append({**p, "id": new})
    i = 0
    for r in out.get(f"{moved}.ndjson", []):
        if subject_of(r) == pid:
            r["subject"] = {"reference": f"Patient/{new_ids[i % len(new_ids)]}"}
            i += 1
    assert i >= 2
    for who, kind, other in links:
        (q,) = [r for r in out["Patient.ndjson"] if r["id"] == who]
        q["link"] = [*q.get("link", []), {"other": {"reference": f"Patient/{other}"}, "type": kind}]
    return out


def as_folder(files: dict[str, list[dict]], d: Path) -> Path:
    d.mkdir()
    for name, rs in files.items():
        write(d / name, rs)
    return d


def as_file(files: dict[str, list[dict]], f: Path) -> Path:
    return write(f, [r for rs in files.values() for r in rs])


def as_bundle(files: dict[str, list[dict]], f: Path) -> Path:
    entries = [{"fullUrl": f"urn:uuid:{r['resourceType']}-{r['id']}", "resource": r}
               for rs in files.values() for r in rs]
    f.write_text(json.dumps({"resourceType": "Bundle", "type": "collection", "entry": entries}))
    return f


def screened(source: Path) -> dict[str, dict]:
    done = run_cli(*SCREEN, "--source", str(source))
    assert done.returncode == 0, done.stderr
    return {r["patient"].removeprefix("Patient/"): r for r in map(orjson.loads, done.stdout.splitlines())}


@pytest.mark.parametrize("shape", ["folder", "file", "bundle"])
def test_a_merged_patient_is_screened_once_under_the_survivor(tmp_path: Path, shape: str) -> None:
    whole = sample_of([SPLIT, *OTHERS])
    # the surviving chart keeps the id; the old one (replaced-by the survivor) holds its Observations
    merged = split(whole, SPLIT, "Observation", ["old-chart"], [("old-chart", "replaced-by", SPLIT)])
    write_as = {"folder": as_folder, "file": as_file, "bundle": as_bundle}[shape]
    suffix = {"folder": "", "file": ".ndjson", "bundle": ".json"}[shape]
    before = screened(write_as(whole, tmp_path / f"whole{suffix}"))
    after = screened(write_as(merged, tmp_path / f"merged{suffix}"))
    assert sorted(after) == sorted(before) == sorted([SPLIT, *OTHERS])  # no line for the replaced chart
    assert after == before  # the survivor's result rests on both charts, exactly as on one
    if shape == "folder":  # and the moved Observations matter: without the link, the survivor's result differs
        apart = screened(write_as(split(whole, SPLIT, "Observation", ["old-chart"], []), tmp_path / "apart"))
        assert apart[SPLIT] != before[SPLIT] and "old-chart" in apart


def test_a_chain_is_read_whole_and_records_say_what_was_merged(tmp_path: Path) -> None:
    whole = sample_of([SPLIT, *OTHERS])
    chain = split(whole, SPLIT, "Observation", ["a", "b"],
                  [("a", "replaced-by", "b"), (SPLIT, "replaces", "b")])  # a -> b -> SPLIT
    d = as_folder(chain, tmp_path / "chain")
    assert screened(d) == screened(as_folder(whole, tmp_path / "whole"))
    done = run_cli("records", "--source", str(d), "--patient", SPLIT)
    assert done.returncode == 0, done.stderr
    (record,) = map(orjson.loads, done.stdout.splitlines())
    assert record["merged"] == ["Patient/a", "Patient/b"]
    n = sum(1 for r in whole["Observation.ndjson"] if subject_of(r) == SPLIT)
    assert record["resources"]["Observation"] == n  # asked for by the survivor's id: the others came along


def test_links_that_cannot_be_followed_leave_each_chart_on_its_own(tmp_path: Path) -> None:
    d = tmp_path / "x"
    d.mkdir()
    write(d / "Patient.ndjson", [
        {**patient("a"), "link": [{"other": {"reference": "Patient/b"}, "type": "replaced-by"}]},
        {**patient("b"), "link": [{"other": {"reference": "Patient/a"}, "type": "replaced-by"}]},  # a loop
        {**patient("c"), "link": [{"other": {"reference": "Patient/gone"}, "type": "replaced-by"}]},  # not here
        {**patient("d"), "link": [{"other": {"reference": "Patient/c"}, "type": "seealso"}]},
    ])
    write(d / "Observation.ndjson", [obs("o1", "a"), obs("o2", "b"), obs("o3", "c"), obs("o4", "d")])
    for source in (NdjsonSource(d, workers=1), BundleSource(as_bundle(
            {"x": [orjson.loads(x) for f in sorted(d.iterdir()) for x in f.read_bytes().splitlines()]},
            tmp_path / "x.json"))):
        records = {r.patient_id: r for r in source.records()}
        assert sorted(records) == ["a", "b", "c", "d"]
        assert all(r.count() == 1 and r.merged == [] for r in records.values())
        noted = source.report.noted["Patient.link not followed"]
        assert noted == 3, source.report.noted  # the loop's two, and c's survivor not in the source
        text = "\n".join(source.report.noted_example.values())
        assert "loop" in text or "not in the source" in text


def test_merging_across_buckets_and_workers(tmp_path: Path) -> None:
    """Pass 1 routes each chart to its own bucket before the links are known; pass 2 still reads them together."""
    d = tmp_path / "many"
    d.mkdir()
    pats = [patient(f"p{i:02d}") for i in range(30)]
    for i in range(0, 30, 3):  # p00 -> p01 -> p02, p03 -> p04 -> p05, ...
        pats[i]["link"] = [{"other": {"reference": f"Patient/p{i + 1:02d}"}, "type": "replaced-by"}]
        pats[i + 2]["link"] = [{"other": {"reference": f"Patient/p{i + 1:02d}"}, "type": "replaces"}]
    write(d / "Patient.ndjson", pats)
    write(d / "Observation.ndjson", [obs(f"o{i}", f"p{i % 30:02d}", value=i) for i in range(300)])
    source = NdjsonSource(d, workers=2, bucket_bytes=2000)
    records = {r.patient_id: r for r in source.map_records(lambda r: r, workers=2)}
    assert sorted(records) == [f"p{i + 2:02d}" for i in range(0, 30, 3)]
    assert all(r.count() == 30 for r in records.values())
    assert records["p02"].merged == ["Patient/p00", "Patient/p01"]
    assert source.report.noted["Patient merged into the Patient that replaced it"] == 20
    assert source.report.read["Patient"] == 10


def test_a_survivor_that_cannot_be_read_takes_its_merged_charts_with_it(tmp_path: Path) -> None:
    """Never half of a person: when the surviving Patient cannot be read, the chart it replaced is not screened on
    its own either."""
    write(tmp_path / "Patient.ndjson", [
        {**patient("old"), "link": [{"other": {"reference": "Patient/new"}, "type": "replaced-by"}]},
        {**patient("new"), "birthDate": 19800501},  # not a string: the Patient cannot be read
        patient("other"),
    ])
    write(tmp_path / "Observation.ndjson", [obs("o1", "old"), obs("o2", "new"), obs("o3", "other")])
    lines = [orjson.loads(x) for f in sorted(tmp_path.glob("*.ndjson")) for x in f.read_bytes().splitlines()]
    for source in (NdjsonSource(tmp_path, workers=1), BundleSource(as_bundle({"x": lines}, tmp_path / "b.json"))):
        assert [r.patient_id for r in source.records()] == ["other"]
        assert source.report.not_read == {"Patient resource unreadable": 1}
        (why,) = source.report.not_read_example.values()
        assert why.startswith("Patient/new not read") and "Patient.birthDate is a number, not a string" in why
