"""``--shareable`` (no ids, MRNs or birth dates; small counts hidden, and none recoverable) and ``--compare``."""

from __future__ import annotations

import json
import re
from pathlib import Path

from fhir_adapter.paths import sample_dir
from fhir_adapter.report.suppress import COMPLEMENT, PRIMARY, Cells, suppress
from tests.report.conftest import lines_of, run_cli

K = 11


def shareable(tmp_path: Path, files: list[Path], fmt: str) -> str:
    target = tmp_path / f"share.{fmt}"
    done = run_cli("report", *map(str, files), "--out", str(target), "--shareable")
    assert done.returncode == 0, done.stderr.decode()
    return target.read_text()


def sample_identifiers() -> tuple[set[str], set[str], set[str]]:
    ids, mrns, births = set(), set(), set()
    for line in (sample_dir() / "Patient.ndjson").read_text().splitlines():
        p = json.loads(line)
        ids.add(p["id"])
        mrns.update(i["value"] for i in p.get("identifier", []))
        if p.get("birthDate"):
            births.add(p["birthDate"])
    return ids, mrns, births


def test_shareable_holds_no_identifier_and_no_small_count(sample_lines: dict[str, Path], tmp_path: Path) -> None:
    files = [sample_lines["promis"], sample_lines["tofa"], sample_lines["response"]]
    ids, mrns, births = sample_identifiers()
    for fmt in ("html", "md", "json"):
        text = shareable(tmp_path, files, fmt)
        found = [x for x in ids | mrns | births if re.search(rf"(?<![\w-]){re.escape(x)}(?![\w-])", text)]
        assert not found, (fmt, found[:5])
    summary = json.loads(shareable(tmp_path, files, "json"))
    counts = []

    def walk(x: object, key: str = "") -> None:
        if isinstance(x, dict):
            for k, v in x.items():
                walk(v, k)
        elif isinstance(x, list):
            for v in x:
                walk(v, key)
        elif isinstance(x, int) and not isinstance(x, bool) and key not in ("suppress_below", "below",
                                                                             "complementary", "lines"):
            counts.append((key, x))
    walk(summary["sections"])
    assert counts and not [c for c in counts if 0 < c[1] < K]
    assert summary["hidden_counts"]["below"] > 0 and summary["hidden_counts"]["complementary"] > 0
    # the full report does show those small counts: the test would catch them
    full = tmp_path / "full.json"
    assert run_cli("report", *map(str, files), "--out", str(full)).returncode == 0
    assert "Patient/" in full.read_text()


def _interval(cells: list[object], total: int) -> list[tuple[int, int]]:
    """For one row that adds up to a shown ``total``: each hidden cell's possible values, given the others
    and what the labels say (``<11``: 1..10, ``hidden``: 11 or more). Counted here by brute force."""
    known = sum(c for c in cells if isinstance(c, int))
    hidden = [c for c in cells if not isinstance(c, int)]
    rest = total - known
    ranges = [(1, K - 1) if c == f"<{K}" else (K, rest) for c in hidden]
    out = []
    for i, (lo, hi) in enumerate(ranges):
        others_lo = sum(r[0] for j, r in enumerate(ranges) if j != i)
        others_hi = sum(r[1] for j, r in enumerate(ranges) if j != i)
        out.append((max(lo, rest - others_hi), min(hi, rest - others_lo)))
    return out


def test_shareable_rows_and_totals_give_no_hidden_count_away(sample_lines: dict[str, Path], tmp_path: Path) -> None:
    """Every row shown with its total: a hidden count is never alone, and no hidden count is pinned to one
    value by the total and the labels (checked row by row, independently of the report's own audit)."""
    summary = json.loads(shareable(tmp_path, [sample_lines["promis"], sample_lines["tofa"],
                                              sample_lines["response"]], "json"))
    rows: list[tuple[str, list[object], object]] = []
    for sec in summary["sections"]:
        if sec["kind"] == "screen":
            n_in = sec["cohort"]["in"]
            if not isinstance(n_in, int) and isinstance(sec["cohort"]["out"], int):
                n_in = sec["population"] - sec["cohort"]["out"]  # as a reader would work it out
                sec["cohort"]["in"] = n_in
            rows.append(("status", list(sec["status"].values()), sec["population"]))
            rows.append(("funnel", [f["excluded"] for f in sec["funnel"]] + [o["patients"] for o in sec["other"]]
                         + list(sec["final"].values()), sec["cohort"]["in"]))
            for r in sec["criteria"]:
                rows.append((r["id"], [r[b] for b in ("met", "not-met", "unknown_machine", "unknown_person",
                                                      "not_evaluated")], sec["cohort"]["in"]))
        else:
            for name in ("classes", "responder", "inactive"):
                rows.append((name, list(sec[name].values()), sec["scored"]))
    checked = 0
    for name, cells, total in rows:
        hidden = [c for c in cells if not isinstance(c, int)]
        if not hidden or not isinstance(total, int):
            continue
        checked += 1
        assert len(hidden) >= 2, (name, cells, total)
        for lo, hi in _interval(cells, total):
            assert hi > lo, (name, cells, total)
    assert checked >= 3  # rows whose total is itself hidden (the cohort, when few are out of it) cannot be checked


def test_suppression_hides_a_second_cell_and_respects_the_labels() -> None:
    """By hand: a row 3 + 40 + 57 = 100 with 3 hidden needs a second hidden cell (else 100 - 40 - 57 = 3); a
    row 1 + 11 = 12 cannot protect its 1 (1..10 and 11+ adding to 12 leave only 1 + 11) without hiding the
    total too."""
    cells = Cells()
    a, b, c, t = (cells.cell((n,), v) for n, v in (("a", 3), ("b", 40), ("c", 57), ("t", 100)))
    cells.total(t, [a, b, c])
    hidden = suppress(cells, K)
    assert hidden == {("a",): PRIMARY, ("b",): COMPLEMENT}
    cells = Cells()
    x, y, t2 = (cells.cell((n,), v) for n, v in (("x", 1), ("y", 11), ("t", 12)))
    cells.total(t2, [x, y])
    hidden = suppress(cells, K)
    assert hidden[("x",)] == PRIMARY and hidden[("t",)] == COMPLEMENT
    # a 2-way table: one hidden cell needs a second in its row and in its column
    cells = Cells()
    grid = {(i, j): cells.cell(("g", i, j), v) for (i, j), v in
            {(0, 0): 2, (0, 1): 30, (1, 0): 25, (1, 1): 40}.items()}
    for i in range(2):
        cells.total(cells.cell(("row", i), sum(cells.values[grid[(i, j)]] for j in range(2))),
                    [grid[(i, j)] for j in range(2)])
    for j in range(2):
        cells.total(cells.cell(("col", j), sum(cells.values[grid[(i, j)]] for i in range(2))),
                    [grid[(i, j)] for i in range(2)])
    hidden = suppress(cells, K)
    assert hidden[("g", 0, 0)] == PRIMARY
    assert {("g", 0, 1), ("row", 0)} & set(hidden) and {("g", 1, 0), ("col", 0)} & set(hidden)
    # brute force: every table of whole numbers that fits what is shown and the labels; g00 is not unique
    shown = {p: v for p, v in cells.values.items() if p not in hidden}
    bound = {PRIMARY: range(1, K), COMPLEMENT: range(K, 100)}
    g00 = set()
    for v00 in bound[hidden[("g", 0, 0)]]:
        for v01 in ([shown[("g", 0, 1)]] if ("g", 0, 1) in shown else bound[hidden[("g", 0, 1)]]):
            for v10 in ([shown[("g", 1, 0)]] if ("g", 1, 0) in shown else bound[hidden[("g", 1, 0)]]):
                for v11 in ([shown[("g", 1, 1)]] if ("g", 1, 1) in shown else bound[hidden[("g", 1, 1)]]):
                    table = {("row", 0): v00 + v01, ("row", 1): v10 + v11, ("col", 0): v00 + v10,
                             ("col", 1): v01 + v11}
                    if all(shown.get(k, v) == v and (k in shown or v in bound[hidden[k]])
                           for k, v in table.items()):
                        g00.add(v00)
    assert len(g00) >= 2 and 2 in g00


def test_shareable_csv_is_refused(sample_lines: dict[str, Path], tmp_path: Path) -> None:
    done = run_cli("report", str(sample_lines["tofa"]), "--out", str(tmp_path / "x.csv"), "--shareable")
    assert done.returncode == 2 and b"cannot be shareable" in done.stderr
    assert not (tmp_path / "x.csv").exists()


def test_compare_new_candidates_status_changes_and_reached_dates(sample_lines: dict[str, Path],
                                                                  tmp_path: Path) -> None:
    """An earlier run at 2026-06-30 against a later one at 2026-09-30: the patients whose passes_from came
    are counted, with their new status."""
    later = run_cli("screen", "--study", "NCT07377058", "--as-of", "2026-09-30", "--source", "sample")
    assert later.returncode == 0
    now = tmp_path / "later.jsonl"
    now.write_bytes(later.stdout)
    before, after = lines_of(sample_lines["promis"]), lines_of(now)
    was = {x["patient"]: x for x in before}
    summary = json.loads((lambda p: (run_cli("report", str(now), "--compare", str(sample_lines["promis"]),
                                             "--out", str(p)), p)[1])(tmp_path / "c.json").read_text())
    c = summary["compare"]
    new_c = [x["patient"] for x in after if x["status"] == "candidate" and was[x["patient"]]["status"] != "candidate"]
    changed = [x["patient"] for x in after if x["status"] != was[x["patient"]]["status"]]
    reached = [x for x in after if was[x["patient"]].get("passes_from")
               and was[x["patient"]]["passes_from"] <= "2026-09-30"]
    assert changed, "the later date must change some statuses for this test to mean anything"
    assert c["new_candidates"] == len(new_c) and [e["patient"] for e in c["new_candidate_list"]] == new_c
    assert c["changed"] == len(changed) and [e["patient"] for e in c["change_list"]] == changed
    assert c["reached_total"] == len(reached) > 0
    assert c["reached"]["candidate"] == sum(1 for x in reached if x["status"] == "candidate")
    for b in ("candidate", "potential-candidate", "ineligible"):
        for a in ("candidate", "potential-candidate", "ineligible"):
            assert c["transitions"][b][a] == sum(1 for x in after if was[x["patient"]]["status"] == b
                                                 and x["status"] == a)
    assert c["transitions"]["new"] == {"candidate": 0, "potential-candidate": 0, "ineligible": 0, "gone": 0}
    # a patient gone from the new run, one new in it
    trimmed = tmp_path / "trimmed.jsonl"
    trimmed.write_text("\n".join(now.read_text().splitlines()[1:]) + "\n")
    partial = tmp_path / "partial.jsonl"
    earlier = sample_lines["promis"].read_text().splitlines()
    partial.write_text("\n".join(earlier[:1] + earlier[2:]) + "\n")
    done = run_cli("report", str(trimmed), "--compare", str(partial), "--out", str(tmp_path / "d.json"))
    assert done.returncode == 0, done.stderr.decode()
    d = json.loads((tmp_path / "d.json").read_text())["compare"]
    assert sum(d["transitions"]["new"].values()) == 1  # the second patient is not in the earlier run
    assert sum(v["gone"] for v in d["transitions"].values()) == 1  # the first is not in the new one
