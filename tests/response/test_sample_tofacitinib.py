"""Every NCT04966884 expectation of the sample's tofa-* patients (fhir_adapter/sample/data/scenarios.json):
anchors, each measure's values, percent change and points, the enzyme chosen, the total, range, class and
responder status, inactive disease at month 12, safety signals and the secondary endpoints."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import pytest

from fhir_adapter.paths import sample_dir
from fhir_adapter.response.respond import Responder
from fhir_adapter.response.settings import load_settings
from fhir_adapter.response.tis import load_rules
from fhir_adapter.sources import open_source
from fhir_adapter.terminology.catalog import Catalog

SITE = sample_dir().parent / "site-mappings.json"
SCENARIOS = json.loads((sample_dir() / "scenarios.json").read_text(encoding="utf-8"))
TOFA = {p["id"]: p["expected"] for p in SCENARIOS["patients"] if p["id"].startswith("tofa-")}
INACTIVE = {"yes": True, "no": False, "unknown": None}
SAFETY = {"zoster": ("new-infection", "herpes-zoster"), "alt_rise": ("liver-enzyme-rise", "alt"),
          "cytopenia": ("cytopenia", None)}
SECONDARY = {"fvc_pct": "fvc-pct-predicted", "dlco_pct": "dlco-pct-predicted", "ferritin": "ferritin",
             "lymphocytes": "lymphocytes", "cd19": "cd19"}


@cache
def results() -> dict[str, dict[str, Any]]:
    settings = load_settings()
    responder = Responder(settings.study("NCT04966884"), settings, load_rules(), Catalog.load(SITE), course=True)
    with open_source("sample", workers=1) as source:
        return {r.patient_id: responder(r) for r in source.records(list(TOFA))}


def test_all_eleven_patients_are_read():
    assert len(TOFA) == 11
    assert set(results()) == set(TOFA)


@pytest.mark.parametrize("pid", sorted(TOFA))
def test_anchors(pid):
    got, want = results()[pid], TOFA[pid]
    assert got["baseline"]["date"] == want["baseline"] == SCENARIOS["tofacitinib"]["baseline_dates"][pid]
    assert got["follow_up"]["date"] == want["month12"]


@pytest.mark.parametrize("pid", sorted(TOFA))
def test_measures(pid):
    got, want = results()[pid]["measures"], TOFA[pid]["tis"]["measures"]
    assert set(got) == set(want)
    for m, w in want.items():
        g = got[m]
        assert g["baseline"]["value"] == pytest.approx(w["baseline"]), (pid, m)
        if w["month12"] is None:
            assert g["follow_up"] is None, (pid, m)
        else:
            assert g["follow_up"]["value"] == pytest.approx(w["month12"]), (pid, m)
        if w["change_pct"] is None:
            assert g["change_pct"] is None, (pid, m)
        else:
            assert round(g["change_pct"], 2) == w["change_pct"], (pid, m)
        assert g["points"] == w["points"], (pid, m)
        if m == "enzyme":
            assert g["concept"] == w["enzyme"].lower(), pid
            assert g["uln"] == pytest.approx(w["uln"]), pid
            assert round(g["baseline_x_uln"], 2) == w["baseline_x_uln"], pid
        if m == "mmt8":
            assert w["unit"] == f"score 0-{g['scale_max']}", pid


@pytest.mark.parametrize("pid", sorted(TOFA))
def test_total_class_and_responder(pid):
    got, want = results()[pid], TOFA[pid]["tis"]
    assert got["tis"] == want["total"]
    assert got["tis_range"] == want["total_range"]
    assert got["category"] == (None if want["class"] == "unknown" else want["class"])
    assert got["responder"] is want["responder"]


@pytest.mark.parametrize("pid", sorted(TOFA))
def test_inactive_disease_at_month_12(pid):
    assert results()[pid]["inactive_disease"] is INACTIVE[TOFA[pid]["inactive_month12"]]


@pytest.mark.parametrize("pid", sorted(TOFA))
def test_safety_signals(pid):
    got = {(s["signal"], s["concept"]) for s in results()[pid]["safety"]}
    want = TOFA[pid]["safety_events"]
    if not want:
        assert got == set()
    for event in want:
        signal, concept = SAFETY[event]
        assert any(s == signal and (concept is None or c == concept) for s, c in got), (pid, event, got)


@pytest.mark.parametrize("pid", sorted(TOFA))
def test_secondary_endpoints(pid):
    got = results()[pid]["endpoints"]
    for key, (base, follow) in TOFA[pid]["secondary_baseline_month12"].items():
        row = got[SECONDARY[key]]
        assert (row["baseline"]["value"], row["follow_up"]["value"]) == (pytest.approx(base), pytest.approx(follow))


def test_course_ends_at_the_month_12_score():
    # the last visit of the course is month 12 and carries the same TIS and class as the headline result
    for pid, got in results().items():
        last = got["visits"][-1]
        assert last["date"] == got["follow_up"]["date"], pid
        assert (last["tis"], last["tis_range"], last["category"]) == (got["tis"], got["tis_range"], got["category"])
    # tofa-responder-major improves step by step: 2.5, 37.5, 62.5, 80, 87.5 at months 1, 3, 6, 9, 12
    assert [v["tis"] for v in results()["tofa-responder-major"]["visits"]] == [2.5, 37.5, 62.5, 80.0, 87.5]
