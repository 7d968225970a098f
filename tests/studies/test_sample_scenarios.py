"""The whole built-in sample, screened end to end, against every expectation of ``scenarios.json``.

``scenarios.json`` is written by tools/make_sample.py with each expectation derived by hand from the protocol;
statuses use the R4 ResearchSubject names (candidate, potential-candidate, ineligible).
"""

from __future__ import annotations

from datetime import date
from typing import Any

import orjson
import pytest

from fhir_adapter.paths import sample_dir
from fhir_adapter.sources import open_source
from fhir_adapter.studies.definition import load_study
from fhir_adapter.studies.screen import screen
from fhir_adapter.terminology.catalog import Catalog
from tests.studies.helpers import SITE


@pytest.fixture(scope="module")
def screened() -> dict[str, dict[str, Any]]:
    study, catalog = load_study("NCT07377058"), Catalog.load(SITE)
    with open_source("sample") as source:
        return {r.patient_id: screen(r, study, catalog, date(2026, 6, 30), all_criteria=True)
                for r in source.records()}


def test_every_scenario_expectation(screened: dict[str, dict[str, Any]]) -> None:
    """Every criterion and status expectation of every PROMIS-MDA5 scenario."""
    scenarios = orjson.loads((sample_dir() / "scenarios.json").read_bytes())
    wrong, checked = [], 0
    for p in scenarios["patients"]:
        if p["study"] != "NCT07377058":
            continue
        out = screened[p["id"]]
        for cid, want in p["expected"].items():
            got = out["status"] if cid == "status" else out["criteria"][cid]["result"]
            checked += 1
            if got != want:
                reason = out["criteria"].get(cid, {}).get("reason", out.get("reason"))
                wrong.append(f"{p['id']} {cid}: expected {want}, got {got} ({reason})")
    assert not wrong, "\n".join(wrong)
    assert checked > 3000


def test_every_criterion_present_for_every_patient(screened: dict[str, dict[str, Any]]) -> None:
    """Every id I1-I8, E1-E18 is always there with its combined result, parts beside it."""
    ids = [f"I{i}" for i in range(1, 9)] + [f"E{i}" for i in range(1, 19)]
    parts = ["E3a", "E3b", "E3c", "E3d", "E3e", "E3f", "E3g", "E3h", "E5a", "E5b", "E14.1", "E14.2", "E14.3"]
    for out in screened.values():
        assert set(ids + parts) <= set(out["criteria"]), out["patient"]
        for cid, c in out["criteria"].items():
            assert c["result"] in ("met", "not-met", "unknown") and c["reason"], (out["patient"], cid)
            if c["result"] == "unknown":
                assert c.get("to_resolve"), (out["patient"], cid)
        assert out["status"] in ("ineligible", "potential-candidate", "candidate")


def test_people_decide_consent_judgement_and_future_obligation(
        screened: dict[str, dict[str, Any]]) -> None:
    """I6 (TMP-SMX 'during treatment'), I8 (consent), E18 (investigator): unknown, decided by a person, never met."""
    for out in screened.values():
        for cid in ("I6", "I8", "E18"):
            c = out["criteria"][cid]
            assert c["result"] == "unknown" and c["decided_by"] == "person"


def test_deceased_is_ineligible_with_reason(screened: dict[str, dict[str, Any]]) -> None:
    """A deceased patient is ineligible whatever the criteria say."""
    out = screened["misc-deceased"]
    assert out["status"] == "ineligible" and "deceased" in out["reason"]


def test_local_codes_only_patient_needs_the_site_file(screened: dict[str, dict[str, Any]]) -> None:
    """mda5-ild-02-local (local lab codes, text units, Hb in g/dL, PaO2 in kPa) decides through the site file;
    without it the labs are unknown, never normal."""
    out = screened["mda5-ild-02-local"]
    assert out["criteria"]["E3a"]["result"] == "not-met" and out["criteria"]["E3d"]["result"] == "not-met"
    with open_source("sample") as source:
        record = next(iter(source.records(["mda5-ild-02-local"])))
    bare = screen(record, load_study("NCT07377058"), Catalog.load(), date(2026, 6, 30))
    assert bare["criteria"]["E3a"]["result"] == "unknown"
    assert bare["status"] != "ineligible" or bare["criteria"]["I2"]["result"] != "met"


def test_passes_from_on_window_failures(screened: dict[str, dict[str, Any]]) -> None:
    """Window criteria that fail now say when they would pass."""
    assert screened["incl-i4-pred-3wk"]["criteria"]["I4"]["passes_from"] == "2026-07-07"
    assert screened["excl-e14-1-rituximab"]["criteria"]["E14.1"]["passes_from"] == "2026-09-02"  # 2026-03-02 + 184 d
    assert screened["excl-e14-2-jaki"]["criteria"]["E14.2"]["passes_from"] == "2026-07-05"  # 06-20 + 15 d
    assert screened["excl-e13-ivig"]["criteria"]["E13"]["passes_from"] == "2026-07-14"
    assert screened["incl-i5-cni-dose-change"]["criteria"]["I5"]["passes_from"] == "2026-07-14"
