"""``fhir-adapter export --out FOLDER``: the manifest tells the truth about the files beside it (checksums,
counts), no key leaves, only the statuses asked for leave, the Bulk layout holds the Bundles' resources, and an
export that stops leaves no manifest."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import orjson
import pytest

from fhir_adapter.export.folder import deidentification_text
from tests.test_cli import run_cli

ROOT = Path(__file__).resolve().parents[2]
KEY_TEXT = "3f1c9a0b7d2e4f6a8b1c3d5e7f9a0b2c4d6e8f0a1b3c5d7e9f1a2b4c6d8e0f1a"


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The sample's PROMIS-MDA5 screening lines and NCT04966884 response lines, from the command line."""
    folder = tmp_path_factory.mktemp("results")
    out = {}
    for name, args in (("screen", ["screen", "--study", "promis-mda5", "--as-of", "2026-06-30"]),
                       ("response", ["response", "--study", "NCT04966884"])):
        done = run_cli("-q", *args, "--source", "sample")
        assert done.returncode == 0, done.stderr
        out[name] = folder / f"{name}.jsonl"
        out[name].write_text(done.stdout)
    return out


@pytest.fixture()
def key(tmp_path: Path) -> Path:
    path = tmp_path / "export.key"
    path.write_text(KEY_TEXT + "\n")
    return path


def _lines(path: Path) -> list[dict]:
    return [orjson.loads(x) for x in path.read_bytes().splitlines()]


def _export(*args: str) -> subprocess.CompletedProcess[str]:
    done = run_cli("export", *args)
    assert done.returncode == 0, done.stderr
    return done


def _bundle_counts(bundles: list[dict]) -> tuple[dict[str, dict[str, int]], Counter[str]]:
    """Results per kind and status, and resources per type, read from the Bundles themselves."""
    results: dict[str, Counter[str]] = {}
    resources: Counter[str] = Counter()
    for b in bundles:
        rs = [e["resource"] for e in b["entry"]]
        resources.update(r["resourceType"] for r in rs)
        subject = next((r for r in rs if r["resourceType"] == "ResearchSubject"), None)
        kind, status = ("screening", subject["status"]) if subject else ("response", "response")
        results.setdefault(kind, Counter())[status] += 1
    return {k: dict(v) for k, v in results.items()}, resources


@pytest.mark.parametrize("layout", ["bundles", "bulk"])
def test_the_manifest_checksums_and_counts_are_those_of_the_files(results, key, tmp_path, layout) -> None:
    out = tmp_path / "sponsor"
    _export(str(results["screen"]), str(results["response"]), "--key-file", str(key), "--out", str(out),
            "--only", "candidate,potential-candidate,ineligible,response", "--layout", layout)
    manifest = orjson.loads((out / "manifest.json").read_bytes())
    assert set(manifest["files"]) | {"manifest.json"} == {p.name for p in out.iterdir()}
    for name, entry in manifest["files"].items():
        data = (out / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], name
        assert len(data) == entry["bytes"]
        if name.endswith(".ndjson"):
            assert len(data.splitlines()) == entry["lines"]
    counts = manifest["counts"]
    if layout == "bundles":
        results_in_files, resources_in_files = _bundle_counts(_lines(out / "Bundle.ndjson"))
        assert counts["results"] == results_in_files
        assert counts["bundles"] == len(_lines(out / "Bundle.ndjson"))
    else:
        resources_in_files = Counter({p.name.removesuffix(".ndjson"): len(_lines(p)) for p in out.glob("*.ndjson")})
        subjects = Counter(r["status"] for r in _lines(out / "ResearchSubject.ndjson"))
        assert counts["results"]["screening"] == dict(subjects)
        assert counts["bundles"] == resources_in_files["Provenance"]  # one Provenance per result
    assert counts["resources"] == dict(resources_in_files)
    screened = Counter(r["status"] for r in _lines(results["screen"]))
    assert counts["results"] == {"screening": dict(screened), "response": {"response": 14}}
    assert counts["not_exported"] == {}
    assert manifest["deidentification"]["date_shift"]["range_days"] == [-182, 182]
    assert re.fullmatch(r"[0-9a-f]{16}", manifest["deidentification"]["key_fingerprint"])
    study_files = {"studies/NCT07377058.json", "studies/response.json", "studies/tis-2016-acr-eular.json"}
    assert set(manifest["studies"]) == study_files
    for name, entry in manifest["studies"].items():
        assert hashlib.sha256((ROOT / name).read_bytes()).hexdigest() == entry["sha256"]


def test_no_key_in_any_output_file(results, key, tmp_path) -> None:
    out = tmp_path / "sponsor"
    done = _export(str(results["screen"]), "--key-file", str(key), "--out", str(out), "--free-text", "keep")
    grep = subprocess.run(["grep", "-r", "-i", "-l", "-e", KEY_TEXT, "-e", KEY_TEXT[:16], str(out)],
                          capture_output=True, text=True)
    assert grep.returncode == 1, grep.stdout  # 1: no file holds it
    assert KEY_TEXT[:16] not in done.stderr
    assert len(list(out.iterdir())) == 3


def test_by_default_only_candidates_and_potential_candidates_leave(results, key, tmp_path) -> None:
    out = tmp_path / "sponsor"
    done = _export(str(results["screen"]), str(results["response"]), "--key-file", str(key), "--out", str(out))
    screened = _lines(results["screen"])
    wanted = [r for r in screened if r["status"] in ("candidate", "potential-candidate")]
    assert 0 < len(wanted) < len(screened)
    bundles = _lines(out / "Bundle.ndjson")
    subjects = [e["resource"] for b in bundles for e in b["entry"]
                if e["resource"]["resourceType"] == "ResearchSubject"]
    assert len(bundles) == len(subjects) == len(wanted)  # no response result either: not asked for
    assert {s["status"] for s in subjects} == {"candidate", "potential-candidate"}
    # each Bundle is the one of a wanted patient, in order: their pseudonyms (an ineligible one's is not there)
    from fhir_adapter.export.deidentify import Pseudonymizer

    p = Pseudonymizer(KEY_TEXT.encode())
    exported = [s["individual"]["reference"] for s in subjects]
    assert exported == [f"Patient/{p.pseudonym('Patient', r['patient'].removeprefix('Patient/'))}" for r in wanted]
    text = (out / "Bundle.ndjson").read_text()
    for r in screened:
        if r["status"] == "ineligible":
            assert p.pseudonym("Patient", r["patient"].removeprefix("Patient/")) not in text
    manifest = orjson.loads((out / "manifest.json").read_bytes())
    assert manifest["selection"] == {"only": ["candidate", "potential-candidate"], "study": None}
    n_ineligible = sum(r["status"] == "ineligible" for r in screened)
    assert manifest["counts"]["not_exported"] == {"status ineligible": n_ineligible, "status response": 14}
    assert f"status ineligible {n_ineligible}" in done.stderr


def test_study_selects_one_study(results, key, tmp_path) -> None:
    out = tmp_path / "sponsor"
    _export(str(results["screen"]), str(results["response"]), "--key-file", str(key), "--out", str(out),
            "--study", "NCT04966884", "--only", "response,candidate")
    manifest = orjson.loads((out / "manifest.json").read_bytes())
    assert manifest["counts"]["results"] == {"response": {"response": 14}}
    assert manifest["counts"]["not_exported"] == {"study NCT07377058": len(_lines(results["screen"]))}
    assert set(manifest["studies"]) == {"studies/response.json", "studies/tis-2016-acr-eular.json"}
    done = run_cli("export", str(results["screen"]), "--key-file", str(key), "--out", str(tmp_path / "x"),
                   "--only", "eligible")
    assert done.returncode == 2 and "eligible: not a status to export" in done.stderr


def _bulk_by_id(folder: Path) -> dict[str, dict]:
    out = {}
    for path in sorted(folder.glob("*.ndjson")):
        lines = path.read_bytes().splitlines()
        for line in lines:
            r = orjson.loads(line)  # one whole resource per line
            assert r["resourceType"] == path.name.removesuffix(".ndjson")  # one type per file
            assert r["id"] not in out
            out[r["id"]] = r
    return out


def test_bulk_layout_holds_the_bundles_resources(results, key, tmp_path) -> None:
    from fhir.resources.R4B import get_fhir_model_class

    common = [str(results["screen"]), str(results["response"]), "--key-file", str(key), "--only",
              "candidate,potential-candidate,response"]
    _export(*common, "--out", str(tmp_path / "bundles"))
    _export(*common, "--out", str(tmp_path / "bulk"), "--layout", "bulk")
    bulk = _bulk_by_id(tmp_path / "bulk")
    assert {p.name for p in (tmp_path / "bulk").glob("*.ndjson")} == {
        "ResearchSubject.ndjson", "Observation.ndjson", "Provenance.ndjson"}
    seen = set()
    for bundle in _lines(tmp_path / "bundles" / "Bundle.ndjson"):
        for entry in bundle["entry"]:
            rid = entry["fullUrl"].removeprefix("urn:uuid:")
            got = dict(bulk[rid])
            del got["id"]
            if got["resourceType"] == "Provenance":  # Bundle-internal targets become Type/id of the same resources
                targets = [t["reference"] for t in got["target"]]
                assert all(t.split("/", 1)[1] in bulk and bulk[t.split("/", 1)[1]]["resourceType"] == t.split("/")[0]
                           for t in targets)
                got["target"] = [{"reference": f"urn:uuid:{t.split('/', 1)[1]}"} for t in targets]
            assert got == entry["resource"]
            seen.add(rid)
    assert seen == set(bulk)  # nothing more, nothing less
    for r in list(bulk.values())[::7]:
        get_fhir_model_class(r["resourceType"]).model_validate(r)


def test_a_killed_export_leaves_no_manifest(results, key, tmp_path) -> None:
    """The export reads standard input; killed half-way (SIGKILL: nothing can tidy up), it leaves no folder
    under the target's name and no manifest anywhere."""
    out = tmp_path / "sponsor"
    lines = results["screen"].read_bytes().splitlines(keepends=True)
    proc = subprocess.Popen([sys.executable, "-m", "fhir_adapter.cli.main", "export", "--key-file", str(key),
                             "--out", str(out), "--only", "candidate,potential-candidate,ineligible"],
                            stdin=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdin is not None
    proc.stdin.write(b"".join(lines[:50]))
    proc.stdin.flush()
    partial = None
    for _ in range(600):  # wait (not a timing) for the export to have started writing
        partial = next((p for p in tmp_path.glob(".sponsor.partial-*/Bundle.ndjson") if p.stat().st_size), None)
        if partial is not None or proc.poll() is not None:
            break
        subprocess.run(["sleep", "0.1"], check=True)
    assert partial is not None and proc.poll() is None
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    assert not list(tmp_path.rglob("manifest.json")) and not list(tmp_path.rglob("*manifest*"))


def test_a_failed_export_leaves_nothing(results, key, tmp_path) -> None:
    out = tmp_path / "sponsor"
    done = run_cli("export", str(results["screen"]), str(tmp_path / "missing.jsonl"), "--key-file", str(key),
                   "--out", str(out))
    assert done.returncode == 1 and "missing.jsonl" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export.key"]


def test_a_non_empty_folder_is_refused_unless_force(results, key, tmp_path) -> None:
    out = tmp_path / "sponsor"
    out.mkdir()
    _export(str(results["screen"]), "--key-file", str(key), "--out", str(out))  # empty: used
    first = (out / "manifest.json").read_bytes()
    done = run_cli("export", str(results["response"]), "--key-file", str(key), "--out", str(out), "--only", "response")
    assert done.returncode == 1 and "not empty" in done.stderr and "--force" in done.stderr
    assert (out / "manifest.json").read_bytes() == first
    _export(str(results["response"]), "--key-file", str(key), "--out", str(out), "--only", "response", "--force")
    assert orjson.loads((out / "manifest.json").read_bytes())["counts"]["results"] == {"response": {"response": 14}}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export.key", "sponsor"]  # nothing set aside is left
    (tmp_path / "file").write_text("x")
    done = run_cli("export", str(results["response"]), "--key-file", str(key), "--out", str(tmp_path / "file"),
                   "--force")
    assert done.returncode == 1 and "not a folder" in done.stderr


def test_the_readme_travels_with_the_export_and_is_the_readmes_section(results, key, tmp_path) -> None:
    out = tmp_path / "sponsor"
    _export(str(results["screen"]), "--key-file", str(key), "--out", str(out), "--max-shift-days", "30")
    readme = (out / "README.txt").read_text()
    fingerprint = orjson.loads((out / "manifest.json").read_bytes())["deidentification"]["key_fingerprint"]
    assert deidentification_text() in readme
    assert "1 to 30 days" in readme and fingerprint in readme
    project_readme = (ROOT / "README.md").read_text()
    assert deidentification_text() in project_readme  # one text: the README section is the package's
