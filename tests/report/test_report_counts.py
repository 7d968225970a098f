"""The report's numbers equal counts computed here, independently, from the result lines themselves."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.report.conftest import ROOT, lines_of, run_cli

GENERATOR = ROOT.parent / "shared" / "bench" / "gen_population.py"


def study_top(study: str) -> tuple[list[str], dict[str, str], dict[str, list[str]]]:
    doc = json.loads((ROOT / "studies" / f"{study}.json").read_text())
    top = [c["id"] for c in doc["criteria"]]
    kind = {c["id"]: c["kind"] for c in doc["criteria"]}
    parts = {c["id"]: [p["id"] for p in c.get("parts", [])] for c in doc["criteria"]}
    return top, kind, parts


def expected_screen(lines: list[dict]) -> dict:
    """Funnel, per criterion, resolve list and worklist sizes, counted the plain way."""
    top, kind, parts = study_top(lines[0]["study"])
    fail_word = {c: "not-met" if kind[c] == "inclusion" else "met" for c in top}
    out = {"population": len(lines), "status": Counter(x["status"] for x in lines),
           "out_by": Counter(), "excluded": Counter(), "unknown_machine": Counter(), "unknown_person": Counter(),
           "per_criterion": {}, "resolve": Counter(), "only": Counter(), "other": 0}
    cohort = [x for x in lines if x.get("cohort", "in") == "in"]
    for x in lines:
        if x.get("cohort") == "out":
            out["out_by"][next(c for c in top if x["criteria"].get(c, {}).get("result") == fail_word[c])] += 1
    for x in cohort:
        for cid, r in x["criteria"].items():
            b = r["result"] if r["result"] != "unknown" else (
                "unknown_person" if r.get("decided_by") == "person" else "unknown_machine")
            out["per_criterion"].setdefault(cid, Counter())[b] += 1
        failed = False
        for c in top:
            r = x["criteria"][c]
            if r["result"] == fail_word[c]:
                out["excluded"][c] += 1
                failed = True
                break
            if r["result"] == "unknown":
                out["unknown_person" if r.get("decided_by") == "person" else "unknown_machine"][c] += 1
        if not failed and x["status"] == "ineligible":
            out["other"] += 1
        if x["status"] == "potential-candidate":
            texts = set()
            for c in top:
                r = x["criteria"][c]
                if r["result"] != "unknown" or r.get("decided_by") == "person":
                    continue
                subs = [p for p in parts[c] if x["criteria"][p]["result"] == "unknown"
                        and x["criteria"][p].get("decided_by") != "person"]
                texts.update(x["criteria"][i]["to_resolve"] for i in (subs or [c]))
            out["resolve"].update(texts)
            if len(texts) == 1:
                out["only"].update(texts)
    out["in"] = len(cohort)
    return out


def report_json(tmp_path: Path, *files: Path, extra: tuple[str, ...] = ()) -> dict:
    target = tmp_path / "r.json"
    done = run_cli("report", *map(str, files), "--out", str(target), *extra)
    assert done.returncode == 0, done.stderr.decode()
    return json.loads(target.read_text())


def check_screen(sec: dict, lines: list[dict]) -> None:
    e = expected_screen(lines)
    assert sec["population"] == e["population"]
    assert sec["status"] == {s: e["status"][s] for s in ("candidate", "potential-candidate", "ineligible")}
    assert sec["cohort"]["in"] == e["in"]
    assert {o["id"]: o["patients"] for o in sec["cohort"]["out_by"]} == dict(e["out_by"])
    remaining = e["in"]
    for f in sec["funnel"]:
        remaining -= e["excluded"][f["id"]]
        assert (f["excluded"], f["unknown_machine"], f["unknown_person"], f["remaining"]) == (
            e["excluded"][f["id"]], e["unknown_machine"][f["id"]], e["unknown_person"][f["id"]], remaining), f["id"]
    assert sum(o["patients"] for o in sec["other"]) == e["other"]
    assert remaining - e["other"] == e["status"]["candidate"] + e["status"]["potential-candidate"]
    assert sec["funnel"][-1]["potential"] >= sec["final"]["potential-candidate"] == e["status"]["potential-candidate"]
    for row in sec["criteria"]:
        got = e["per_criterion"].get(row["id"], Counter())
        assert (row["met"], row["not-met"], row["unknown_machine"], row["unknown_person"]) == (
            got["met"], got["not-met"], got["unknown_machine"], got["unknown_person"]), row["id"]
        assert row["not_evaluated"] == e["in"] - sum(got.values())
    assert {t["what"]: t["patients"] for t in sec["to_resolve"]} == dict(e["resolve"])
    assert {t["what"]: t["only_gap"] for t in sec["to_resolve"] if t["only_gap"]} == dict(e["only"])
    for status in ("candidate", "potential-candidate"):
        listed = [p["patient"] for p in sec["worklist"][status]]
        assert listed == [x["patient"] for x in lines if x["status"] == status]
    pf = [x for x in lines if x["status"] == "ineligible" and x.get("passes_from")]
    assert sec["passes_from"]["total"] == len(pf)
    assert [p["patient"] for p in sec["passes_from"]["patients"]] == \
        [x["patient"] for x in sorted(pf, key=lambda x: x["passes_from"])]


@pytest.mark.parametrize("name", ["promis", "tofa"])
def test_sample_screen_numbers(sample_lines: dict[str, Path], tmp_path: Path, name: str) -> None:
    lines = lines_of(sample_lines[name])
    summary = report_json(tmp_path, sample_lines[name])
    (sec,) = summary["sections"]
    check_screen(sec, lines)
    assert summary["lines"] == len(lines) and summary["bad_lines"] == 0


def test_sample_promis_has_every_kind_of_count(sample_lines: dict[str, Path], tmp_path: Path) -> None:
    """The sample exercises what the report shows: exclusions, unknowns of both kinds, potential candidates
    with something to resolve, passes_from dates, settings."""
    (sec,) = report_json(tmp_path, sample_lines["promis"])["sections"]
    assert sec["status"] == {"candidate": 29, "potential-candidate": 10, "ineligible": 69}
    assert sec["cohort"]["out"] == 6  # out of the entry cohort by I2: ineligible without the other criteria
    assert sum(f["excluded"] for f in sec["funnel"]) == 62 and sec["other"] == [{"reason": "deceased", "patients": 1}]
    assert sec["to_resolve"] and sec["passes_from"]["total"] > 0
    assert any(s["setting"] == "i4_dose_rule=both-must-agree" for s in sec["settings"])
    e3 = next(r for r in sec["criteria"] if r["id"] == "E3a")
    assert e3["part_of"] == "E3"


def test_response_numbers(sample_lines: dict[str, Path], tmp_path: Path) -> None:
    lines = lines_of(sample_lines["response"])
    (sec,) = report_json(tmp_path, sample_lines["response"])["sections"]
    assert sec["scored"] == len(lines) == 14
    cats = Counter(x["category"] or "unknown" for x in lines)
    assert sec["classes"] == {c: cats[c] for c in ("major", "moderate", "minimal", "none", "unknown")}
    assert sec["classes"] == {"major": 4, "moderate": 2, "minimal": 2, "none": 2, "unknown": 4}
    inactive = Counter({True: "yes", False: "no", None: "unknown"}[x["inactive_disease"]] for x in lines)
    assert sec["inactive"] == {k: inactive[k] for k in ("yes", "no", "unknown")}
    for m in sec["measures"]:
        changes = [x["measures"][m["id"]]["change_pct"] for x in lines]
        assert m["improved"] == sum(1 for c in changes if c is not None and c > 0)
        assert m["worsened"] == sum(1 for c in changes if c is not None and c < 0)
        assert m["missing"] == sum(1 for c in changes if c is None)
    fvc = next(m for m in sec["endpoints"] if m["id"] == "fvc-pct-predicted")
    changes = sorted(x["endpoints"]["fvc-pct-predicted"]["change"] for x in lines
                     if x["endpoints"]["fvc-pct-predicted"]["change"] is not None)
    assert fvc["rose"] == sum(1 for c in changes if c > 0) and fvc["n_changes"] == len(changes)
    if changes:
        mid = len(changes) // 2
        assert fvc["median_change"] == (changes[mid] if len(changes) % 2 else (changes[mid - 1] + changes[mid]) / 2)
    signals = Counter(f"{s['signal']}: {s['concept']}" for x in lines for s in x["safety"])
    assert {s["signal"]: s["patients"] for s in sec["safety"]} == dict(signals)


def test_entry_cohort_lines_and_lines_without_it(tmp_path: Path) -> None:
    """A line with ``"cohort": "out"`` holds only its deciding criterion; a line without ``cohort`` is in."""
    def line(pid: str, t1: str, t2: str, status: str, **kw: object) -> dict:
        crit = {"T1": {"result": t1, "reason": "r", "evidence": []},
                "T2": {"result": t2, "reason": "r", "evidence": []}}
        return {"patient": f"Patient/{pid}", "study": "NCT04966884", "as_of": "2026-06-30", "status": status,
                "reason": "x", "review": [], "criteria": crit, **kw}
    lines = [
        {"patient": "Patient/o1", "study": "NCT04966884", "as_of": "2026-06-30", "status": "ineligible",
         "cohort": "out", "reason": "fails T1", "review": [],
         "criteria": {"T1": {"result": "not-met", "reason": "no DM", "evidence": []}}},
        {"patient": "Patient/o2", "study": "NCT04966884", "as_of": "2026-06-30", "status": "ineligible",
         "cohort": "out", "reason": "fails T1", "review": [],
         "criteria": {"T1": {"result": "not-met", "reason": "no DM", "evidence": []}}},
        line("i1", "met", "met", "candidate", cohort="in", mrn="MRN-1"),
        line("i2", "met", "not-met", "ineligible"),  # no cohort field: in
        {**line("i3", "unknown", "met", "potential-candidate"),
         "criteria": {"T1": {"result": "unknown", "reason": "no test", "evidence": [],
                             "to_resolve": "an anti-MDA5 test"},
                      "T2": {"result": "met", "reason": "adult", "evidence": []}}},
    ]
    src = tmp_path / "lines.jsonl"
    src.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    (sec,) = report_json(tmp_path, src)["sections"]
    assert sec["cohort"] == {"in": 3, "out": 2, "field_present": True,
                             "out_by": [{"id": "T1", "text": sec["cohort"]["out_by"][0]["text"], "patients": 2}]}
    assert [(f["id"], f["excluded"], f["unknown_machine"], f["remaining"]) for f in sec["funnel"]] == \
        [("T1", 0, 1, 3), ("T2", 1, 0, 2)]
    t1 = next(r for r in sec["criteria"] if r["id"] == "T1")
    assert (t1["met"], t1["not-met"], t1["unknown_machine"]) == (2, 0, 1)  # the out-of-cohort lines are not here
    assert sec["to_resolve"] == [{"what": "an anti-MDA5 test", "criteria": ["T1"], "patients": 1, "only_gap": 1}]
    assert sec["worklist"]["candidate"][0]["mrn"] == "MRN-1"
    csv_out = tmp_path / "r.csv"
    assert run_cli("report", str(src), "--out", str(csv_out)).returncode == 0
    rows = csv_out.read_text().splitlines()
    assert rows[0] == "patient,mrn,study,as_of,status,cohort,failing,unknown,for_person,passes_from"
    assert rows[1].startswith("Patient/o1,,NCT04966884,2026-06-30,ineligible,out,T1,")
    assert rows[3].startswith("Patient/i1,MRN-1,NCT04966884,2026-06-30,candidate,in,,,")
    assert rows[4].startswith("Patient/i2,,NCT04966884,2026-06-30,ineligible,in,T2,")
    assert len(rows) == 1 + len(lines)


@pytest.mark.skipif(not GENERATOR.exists(), reason="../shared/bench/gen_population.py is not beside the project")
def test_generated_population_numbers(tmp_path: Path) -> None:
    folder = tmp_path / "pop"
    subprocess.run([sys.executable, str(GENERATOR), "400", "--out", str(folder)], check=True, capture_output=True)
    as_of = json.loads((folder / "population.json").read_text())["ref_date"]
    done = run_cli("screen", "--study", "NCT07377058", "--source", str(folder), "--as-of", as_of)
    assert done.returncode == 0, done.stderr.decode()
    src = tmp_path / "screen.jsonl"
    src.write_bytes(done.stdout)
    lines = lines_of(src)
    assert len(lines) == 400
    (sec,) = report_json(tmp_path, src)["sections"]
    check_screen(sec, lines)
    # a bounded worklist lists the first N of each status and counts the rest
    (small,) = report_json(tmp_path, src, extra=("--worklist-max", "3"))["sections"]
    for status in ("candidate", "potential-candidate"):
        assert len(small["worklist"][status]) == min(3, sec["status"][status])
        assert small["not_listed"][status] == max(0, sec["status"][status] - 3)


def test_bad_lines_are_named_counted_and_exit_3(sample_lines: dict[str, Path], tmp_path: Path) -> None:
    src = tmp_path / "mixed.jsonl"
    good = sample_lines["tofa"].read_text().splitlines()
    src.write_text("\n".join([good[0], "{not json", '{"patient": "Patient/x", "resources": {}}', *good[1:]]) + "\n")
    target = tmp_path / "r.json"
    done = run_cli("report", str(src), "--out", str(target))
    assert done.returncode == 3
    err = done.stderr.decode()
    assert f"{src}:2: not JSON" in err and f"{src}:3: not a result line" in err
    summary = json.loads(target.read_text())
    assert summary["bad_lines"] == 2 and summary["sections"][0]["population"] == len(good)


def test_standard_input_and_markdown(sample_lines: dict[str, Path]) -> None:
    done = run_cli("report", "-", "--out", "-", "--format", "md", stdin=sample_lines["tofa"].read_bytes())
    assert done.returncode == 0, done.stderr.decode()
    md = done.stdout.decode()
    assert "## NCT04966884" in md and "| T1 anti-MDA5 positive dermatomyositis |" in md
    assert "candidates 98, potential candidates 2, ineligible 8" in md
