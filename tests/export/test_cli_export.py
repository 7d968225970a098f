"""``fhir-adapter export``: a folder of Bundles that appears complete, a bad line named and skipped, the others
exported."""

from __future__ import annotations

import json
import os
from pathlib import Path

import orjson

from tests.export.test_deidentify import KEY, _screening
from tests.test_cli import run_cli


def _key(tmp_path: Path) -> Path:
    key = tmp_path / "export.key"
    key.write_bytes(KEY + b"\n")
    return key


def test_screen_piped_into_export(tmp_path: Path) -> None:
    screened = run_cli("-q", "screen", "--study", "promis-mda5", "--source", "sample", "--as-of", "2026-06-30")
    assert screened.returncode == 0, screened.stderr
    out = tmp_path / "sponsor"
    done = run_cli("export", "--key-file", str(_key(tmp_path)), "--out", str(out), "--only",
                   "candidate,potential-candidate,ineligible", stdin=screened.stdout)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    exported = (out / "Bundle.ndjson").read_text()
    bundles = [orjson.loads(x) for x in exported.splitlines()]
    assert len(bundles) == len(screened.stdout.splitlines()) > 50
    assert all(b["resourceType"] == "Bundle" and b["type"] == "collection" for b in bundles)
    assert "tofa-ukat-mm" in screened.stdout and "tofa-ukat-mm" not in exported
    assert '"cohort":"out"' in screened.stdout  # short results of patients out of the entry cohort, exported too
    assert f"{len(bundles)} Bundles (screening {len(bundles)} (candidate " in done.stderr
    assert "0 skipped" in done.stderr
    assert "dates shifted by up to 182 days; free text removed" in done.stderr


def test_a_bad_line_is_named_and_skipped_and_the_rest_exported(tmp_path: Path) -> None:
    results = tmp_path / "results.jsonl"
    lines = [json.dumps(_screening("a")), "{not json", json.dumps({"resourceType": "Patient"}), "",
             json.dumps(_screening("b"))]
    results.write_text("\n".join(lines) + "\n")
    out = tmp_path / "sponsor" / "promis"
    env = {**os.environ, "FHIR_ADAPTER_PSEUDONYM_KEY": KEY.decode()}
    done = run_cli("export", str(results), "--out", str(out), "--only", "ineligible", env=env)
    assert done.returncode == 1
    assert "results.jsonl line 2: not JSON" in done.stderr
    assert "results.jsonl line 3: not a result line" in done.stderr
    assert "2 Bundles (screening 2 (ineligible 2)), 2 skipped" in done.stderr
    assert done.stdout == ""
    assert len((out / "Bundle.ndjson").read_text().splitlines()) == 2
    assert json.loads((out / "manifest.json").read_text())["counts"]["not_exported"] == {"errors": 2}
    assert [p.name for p in out.parent.iterdir()] == ["promis"]  # no temporary folder left


def test_without_a_key_nothing_is_written(tmp_path: Path) -> None:
    results = tmp_path / "results.jsonl"
    results.write_text(json.dumps(_screening()) + "\n")
    out = tmp_path / "sponsor"
    env = {k: v for k, v in os.environ.items() if k != "FHIR_ADAPTER_PSEUDONYM_KEY"}
    done = run_cli("export", str(results), "--out", str(out), env=env)
    assert done.returncode == 1 and "a pseudonym key is needed" in done.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == [results]
    short = tmp_path / "short.key"
    short.write_text("secret")
    done = run_cli("export", str(results), "--key-file", str(short), "--out", str(out))
    assert done.returncode == 1 and "at least 32" in done.stderr and done.stdout == ""
    assert not out.exists()
