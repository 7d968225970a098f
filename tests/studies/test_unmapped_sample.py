"""The whole built-in sample screened without its site file, as a hospital would first run it: local codes map to
nothing, and no patient who is a candidate (or potential candidate) with the site file may come out
``ineligible`` without it; standard error says codes are unmapped and where to list them."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path
from typing import Any

import orjson
import pytest

from fhir_adapter.paths import sample_dir
from fhir_adapter.sources import open_source
from fhir_adapter.studies.definition import load_study
from fhir_adapter.studies.screen import screen
from fhir_adapter.terminology.catalog import Catalog
from tests.studies.helpers import SITE
from tests.test_cli import run_cli

AS_OF = "2026-06-30"
FORMULARY = "http://hospital.example.cn/CodeSystem/formulary"


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample's NDJSON files in a plain folder (``--source sample`` would bring the sample's site file)."""
    out = tmp_path_factory.mktemp("sample-without-site")
    for f in sample_dir().glob("*.ndjson"):
        shutil.copy(f, out / f.name)
    return out


@pytest.fixture(scope="module")
def with_site() -> dict[str, str]:
    study, catalog = load_study("NCT07377058"), Catalog.load(SITE)
    with open_source("sample") as source:
        return {r.reference: screen(r, study, catalog, date.fromisoformat(AS_OF))["status"] for r in source.records()}


def statuses(stdout: str) -> dict[str, dict[str, Any]]:
    return {(x := orjson.loads(line))["patient"]: x for line in stdout.splitlines()}


def wrongly_ineligible(with_site: dict[str, str], without: dict[str, dict[str, Any]]) -> list[str]:
    assert set(without) == set(with_site)
    return sorted(p for p, s in with_site.items() if s != "ineligible" and without[p]["status"] == "ineligible")


def says_unmapped(stderr: str) -> None:
    assert "fhir-adapter: codes that map to no concept:" in stderr
    assert "MedicationStatement" in stderr and "Observation" in stderr
    assert "possible matches: " in stderr and "criterion results unknown" in stderr
    assert "fhir-adapter mappings unmapped --source " in stderr and f"--study NCT07377058 --as-of {AS_OF}" in stderr


def test_no_candidate_becomes_ineligible_without_the_site_file(folder: Path, with_site: dict[str, str]) -> None:
    done = run_cli("screen", "--study", "NCT07377058", "--source", str(folder), "--as-of", AS_OF, timeout=600)
    assert done.returncode == 0, done.stderr
    without = statuses(done.stdout)
    assert wrongly_ineligible(with_site, without) == []
    says_unmapped(done.stderr)


def test_mda5_ild_02_local_without_the_site_file(folder: Path) -> None:
    """Its 4 drug records carry local formulary codes (prednisone, tacrolimus, named in Chinese): before, it came
    out ineligible on "no glucocorticoid among 4 medication records"."""
    done = run_cli("screen", "--study", "NCT07377058", "--source", str(folder), "--as-of", AS_OF,
                   "--patient", "mda5-ild-02-local")
    assert done.returncode == 0, done.stderr
    out = orjson.loads(done.stdout)
    assert out["status"] == "potential-candidate"
    i4, i5 = out["criteria"]["I4"], out["criteria"]["I5"]
    assert i4["result"] == "unknown" and i5["result"] == "unknown"
    assert f"{FORMULARY}|YP-0107 '醋酸泼尼松片 5mg' (possibly prednisone)" in i4["to_resolve"]
    assert f"{FORMULARY}|YP-0231 '他克莫司胶囊 1mg' (possibly tacrolimus)" in i5["to_resolve"]
    assert "possible matches: 3 criterion results unknown" in done.stderr  # I4, I5 and E12


def test_no_candidate_becomes_ineligible_from_the_server_either(fhir_base: str, with_site: dict[str, str]) -> None:
    loaded = run_cli("load-sample", "--server", fhir_base, timeout=600)
    assert loaded.returncode == 0, loaded.stderr
    done = run_cli("screen", "--study", "NCT07377058", "--source", fhir_base, "--as-of", AS_OF, timeout=900)
    assert done.returncode == 0, done.stderr
    without = {p: r for p, r in statuses(done.stdout).items() if p in with_site}  # the server may hold others
    assert wrongly_ineligible(with_site, without) == []
    says_unmapped(done.stderr)


def test_response_says_who_may_be_on_the_study_drug(folder: Path) -> None:
    """tofa-nonresponder takes tofacitinib under a local formulary code: without the site file it is not scored,
    and standard error says it may be on the drug and which code to map."""
    done = run_cli("response", "--study", "NCT04966884", "--source", str(folder), "--workers", "2")
    assert done.returncode == 0, done.stderr
    assert "tofa-nonresponder" not in done.stdout
    assert "Patient/tofa-nonresponder: not scored, but may be on tofacitinib: map " \
           f"{FORMULARY}|YP-0415 '枸橼酸托法替布片 5mg' (possibly tofacitinib)" in done.stderr
    assert "possible matches: 1 patient not scored may be on tofacitinib" in done.stderr
    assert "codes that map to no concept:" in done.stderr
