"""A report's content from result lines: stream them, tally, and produce one JSON-ready summary that every
format (HTML, Markdown, JSON) renders; the CSV rows go to a callback as the lines pass.

``shareable(summary, k)`` makes the copy for sharing outside the care team: no patient ids, MRNs, ages, dates
of birth or per-patient reasons, and the counts hidden by ``suppress`` (small counts and their complements).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path as FilePath
from typing import Any

from fhir_adapter import __version__
from fhir_adapter.errors import ConfigError
from fhir_adapter.report.compare import AFTER, BEFORE, CompareTally, load_previous
from fhir_adapter.report.lines import RESPONSE, SCREEN, BadLine, kind_of, read_lines
from fhir_adapter.report.responses import CLASSES, DIRECTIONS, INACTIVE, MOVES, ResponseTally
from fhir_adapter.report.screening import BUCKETS, STATUSES, ScreenTally, Shape
from fhir_adapter.report.suppress import COMPLEMENT, Cells, suppress
from fhir_adapter.studies.definition import Study, load_study

Row = Callable[[str, dict[str, Any]], None]


@dataclass
class Options:
    limit: int = 500  # worklist entries kept per status (and per list)
    compare: list[str] = field(default_factory=list)
    study_files: list[str] = field(default_factory=list)  # study files for lines of a study not built in


def build(names: list[str], options: Options | None = None, row: Row | None = None,
          bad: list[BadLine] | None = None) -> dict[str, Any]:
    """Read every result line of ``names`` once and return the report's summary. ``row(kind, fields)`` gets
    each patient's CSV row; lines that are no result are appended to ``bad`` (and counted in the summary)."""
    options = options or Options()
    bad = [] if bad is None else bad
    studies = {s.id: s for s in (load_study(f) for f in options.study_files)}
    screens: dict[str, ScreenTally] = {}
    responses: dict[str, ResponseTally] = {}
    compare = None
    if options.compare:
        compare = CompareTally(load_previous(options.compare, bad), limit=options.limit)
    lines = 0
    for _name, _n, line in read_lines(names):
        if isinstance(line, BadLine):
            bad.append(line)
            continue
        lines += 1
        study_id = str(line.get("study") or "unknown")
        if kind_of(line) == SCREEN:
            tally = screens.get(study_id)
            if tally is None:
                tally = screens[study_id] = ScreenTally(Shape(_study(study_id, studies)), limit=options.limit)
            fields = tally.add(line)
            if compare is not None:
                compare.add(line)
            if row:
                row(SCREEN, fields)
        else:
            rtally = responses.get(study_id)
            if rtally is None:
                rtally = responses[study_id] = ResponseTally(study_id, limit=options.limit)
            fields = rtally.add(line)
            if row:
                row(RESPONSE, fields)
    return {
        "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "version": __version__,
        "inputs": list(names), "compared_with": list(options.compare), "lines": lines,
        "bad_lines": len(bad), "bad_examples": [str(b) for b in bad[:5]],
        "sections": [screen_summary(t) for t in screens.values()] + [t.summary() for t in responses.values()],
        "compare": compare.summary() if compare is not None else None,
        "shareable": False,
    }


def _study(study_id: str, given: dict[str, Study]) -> Study:
    if study_id in given:
        return given[study_id]
    try:
        return load_study(study_id)
    except ConfigError:
        raise ConfigError(f"result lines of study {study_id!r}, which is not built in: name its study file with "
                          f"--study FILE") from None


def screen_summary(t: ScreenTally) -> dict[str, Any]:
    shape = t.shape
    n_in = t.population - sum(t.out_by.values())
    funnel = []
    remaining = n_in
    for cid in shape.top:
        remaining -= t.excluded[cid]
        funnel.append({"id": cid, "kind": shape.kind[cid], "text": _text(shape, cid),
                       "excluded": t.excluded[cid], "unknown_machine": t.unknown_machine[cid],
                       "unknown_person": t.unknown_person[cid], "remaining": remaining,
                       "potential": t.potential[cid]})
    ids = list(shape.top) + [c for c in t.per_criterion if c not in shape.top]
    order = {c: i for i, c in enumerate(shape.top)}
    ids.sort(key=lambda c: (order.get(shape.parent(c) or c, len(order)), shape.parent(c) is not None))
    criteria = []
    for c in ids:
        counts = {b: t.per_criterion.get(c, {}).get(b, 0) for b in BUCKETS[:4]}
        criteria.append({"id": c, "part_of": shape.parent(c), "kind": shape.kind.get(shape.parent(c) or c, ""),
                         "text": _text(shape, c), "combined": c in shape.combined, **counts,
                         "not_evaluated": n_in - sum(counts.values())})
    resolve = sorted(t.resolve.items(), key=lambda kv: (-kv[1][0], kv[0]))
    return {
        "kind": "screen", "study": shape.study.id, "title": shape.study.title,
        "as_of": [{"date": d, "patients": n} for d, n in sorted(t.as_of.items())],
        "population": t.population,
        "status": {s: t.status[s] for s in STATUSES},
        "cohort": {"in": n_in, "out": sum(t.out_by.values()), "field_present": t.cohort_field > 0,
                   "out_by": [{"id": c, "text": _text(shape, c), "patients": n}
                              for c, n in sorted(t.out_by.items(), key=lambda kv: order.get(kv[0], 99))]},
        "funnel": funnel,
        "other": [{"reason": r, "patients": n} for r, n in sorted(t.other.items())],
        "final": {s: t.final[s] for s in ("candidate", "potential-candidate")},
        "criteria": criteria,
        "to_resolve": [{"what": w, "criteria": sorted(v[2], key=lambda c: ids.index(c) if c in ids else 99),
                        "patients": v[0], "only_gap": v[1]} for w, v in resolve],
        "passes_from": {"total": sum(t.passes_by_month.values()),
                        "by_month": [{"month": m, "patients": n} for m, n in sorted(t.passes_by_month.items())],
                        "patients": t.passes_list(),
                        "not_listed": max(0, sum(t.passes_by_month.values()) - len(t.passes_heap))},
        "settings": [{"setting": s, "patients": n} for s, n in sorted(t.settings.items())],
        "worklist": t.worklist, "not_listed": {s: t.not_listed[s] for s in t.worklist},
        "unreadable": t.unreadable, "with_mrn": t.with_mrn,
        "protocol": {c: shape.protocol.get(c, "") for c in ids},
    }


def _text(shape: Shape, cid: str) -> str:
    for c in shape.study.criteria:
        if c.id == cid:
            return c.text
        for p in c.parts:
            if p.id == cid:
                return p.text
    return ""


# ---------------------------------------------------------------------------------------------------------
# what a reader of the numbers knows: every count and every relation among them (for --shareable)

def cells_of(summary: dict[str, Any]) -> Cells:
    """The report's counts, addressed by their path in ``summary``, with the relations among them."""
    cells = Cells()
    status_cells: dict[str, list[tuple[Hashable, ...]]] = {s: [] for s in STATUSES}
    for i, sec in enumerate(summary["sections"]):
        base: tuple[Hashable, ...] = ("sections", i)
        if sec["kind"] == SCREEN:
            _screen_cells(cells, base, sec, status_cells)
        else:
            _response_cells(cells, base, sec)
    cmp_ = summary.get("compare")
    if cmp_:
        _compare_cells(cells, ("compare",), cmp_, status_cells)
    return cells


def _screen_cells(cells: Cells, base: tuple[Hashable, ...], s: dict[str, Any],
                  status_cells: dict[str, list[tuple[Hashable, ...]]]) -> None:
    c = cells.cell
    pop = c((*base, "population"), s["population"])
    status = {k: c((*base, "status", k), v) for k, v in s["status"].items()}
    for k, p in status.items():
        status_cells[k].append(p)
    cells.total(pop, status.values())
    n_in = c((*base, "cohort", "in"), s["cohort"]["in"])
    n_out = c((*base, "cohort", "out"), s["cohort"]["out"])
    cells.total(pop, [n_in, n_out])
    cells.total(n_out, [c((*base, "cohort", "out_by", j, "patients"), o["patients"])
                        for j, o in enumerate(s["cohort"]["out_by"])])
    rows = {}
    for j, r in enumerate(s["criteria"]):
        rows[r["id"]] = {b: c((*base, "criteria", j, b), r[b]) for b in BUCKETS}
        cells.total(n_in, rows[r["id"]].values())
    # the funnel as a partition of those in the cohort: each leaves at one step or remains. Its running totals
    # (remaining, potential after each step) are not shareable: beside a hidden step they would give it away.
    steps = []
    for k, f in enumerate(s["funnel"]):
        p = {x: c((*base, "funnel", k, x), f[x]) for x in ("excluded", "unknown_machine", "unknown_person")}
        steps.append(p["excluded"])
        row = rows.get(f["id"])
        if row:
            fail = row["not-met" if f["kind"] == "inclusion" else "met"]
            machine = {row["unknown_machine"]: 1, row["not_evaluated"]: 1}
            if k == 0:  # every patient in the cohort reaches the first step
                cells.same(p["excluded"], fail)
                cells.eq({p["unknown_machine"]: -1, **machine})
                cells.same(p["unknown_person"], row["unknown_person"])
    other = [c((*base, "other", j, "patients"), o["patients"]) for j, o in enumerate(s["other"])]
    final = {k: c((*base, "final", k), v) for k, v in s["final"].items()}
    cells.total(n_in, [*steps, *other, *final.values()])
    for k, p in final.items():
        if s["final"][k] == s["status"][k]:
            cells.same(p, status[k])
    for j, r in enumerate(s["to_resolve"]):  # overlapping groups: no total to add up to
        c((*base, "to_resolve", j, "patients"), r["patients"])
        c((*base, "to_resolve", j, "only_gap"), r["only_gap"])
    pf = c((*base, "passes_from", "total"), s["passes_from"]["total"])
    cells.total(pf, [c((*base, "passes_from", "by_month", j, "patients"), m["patients"])
                     for j, m in enumerate(s["passes_from"]["by_month"])])
    for j, st in enumerate(s["settings"]):
        c((*base, "settings", j, "patients"), st["patients"])
    c((*base, "unreadable"), s["unreadable"])
    c((*base, "with_mrn"), s["with_mrn"])


def _response_cells(cells: Cells, base: tuple[Hashable, ...], s: dict[str, Any]) -> None:
    c = cells.cell
    n = c((*base, "scored"), s["scored"])
    for name, keys in (("classes", CLASSES), ("responder", ("yes", "no", "unknown")), ("inactive", INACTIVE)):
        cells.total(n, [c((*base, name, k), s[name][k]) for k in keys])
    for name, keys in (("measures", DIRECTIONS), ("endpoints", MOVES)):
        for j, r in enumerate(s[name]):
            parts = [c((*base, name, j, k), r[k]) for k in keys]
            row_n = c((*base, name, j, "n"), r["n"])
            cells.total(row_n, parts)
            changes = c((*base, name, j, "n_changes"), r["n_changes"])
            cells.total(changes, [q for q, k in zip(parts, keys, strict=True) if k != "missing"])
    for j, r in enumerate(s["safety"]):
        c((*base, "safety", j, "patients"), r["patients"])


def _compare_cells(cells: Cells, base: tuple[Hashable, ...], s: dict[str, Any],
                   status_cells: dict[str, list[tuple[Hashable, ...]]]) -> None:
    c = cells.cell
    t = {(b, a): c((*base, "transitions", b, a), s["transitions"][b][a]) for b in BEFORE for a in AFTER}
    for b in BEFORE:
        cells.total(c((*base, "before", b), s["before"][b]), [t[(b, a)] for a in AFTER])
    for a in AFTER:
        if a != "gone" and status_cells[a]:
            cells.eq({**{t[(b, a)]: 1 for b in BEFORE}, **dict.fromkeys(status_cells[a], -1)})
    cells.total(c((*base, "new_candidates"), s["new_candidates"]),
                [t[(b, "candidate")] for b in BEFORE if b != "candidate"])
    cells.total(c((*base, "changed"), s["changed"]),
                [t[(b, a)] for b in BEFORE for a in AFTER if b != "new" and a != "gone" and a != b])
    reached = [c((*base, "reached", k), v) for k, v in s["reached"].items()]
    cells.total(c((*base, "reached_total"), s["reached_total"]), reached)


# ---------------------------------------------------------------------------------------------------------

def shareable(summary: dict[str, Any], k: int) -> dict[str, Any]:
    """The summary for sharing outside the care team (see the module docstring and ``suppress``)."""
    hidden = suppress(cells_of(summary), k)
    out = copy.deepcopy(summary)
    for path, why in hidden.items():
        _put(out, path, "hidden" if why == COMPLEMENT else f"<{k}")
    out["shareable"] = True
    out["suppress_below"] = k
    out["hidden_counts"] = {"below": sum(1 for w in hidden.values() if w != COMPLEMENT),
                            "complementary": sum(1 for w in hidden.values() if w == COMPLEMENT)}
    out["inputs"] = [FilePath(n).name for n in out["inputs"]]
    out["compared_with"] = [FilePath(n).name for n in out["compared_with"]]
    out["bad_examples"] = []
    for sec in out["sections"]:
        if sec["kind"] == SCREEN:
            for f in sec["funnel"]:
                f["remaining"] = f["potential"] = None
            sec["worklist"] = {s: [] for s in sec["worklist"]}
            sec["not_listed"] = {s: 0 for s in sec["not_listed"]}
            sec["passes_from"]["patients"] = []
            sec["passes_from"]["not_listed"] = 0
        else:
            sec["patients"] = []
            sec["not_listed"] = 0
            for name in ("measures", "endpoints"):
                for r in sec[name]:
                    if not isinstance(r["n_changes"], int) or r["n_changes"] < k:
                        r["median_change"] = None  # a median of few patients is one patient's value
    if out.get("compare"):
        for name in ("new_candidate_list", "change_list", "reached_list"):
            out["compare"][name] = []
        out["compare"]["not_listed"] = {}
    return out


def _put(tree: Any, path: Iterable[Hashable], value: Any) -> None:
    *head, last = list(path)
    for key in head:
        tree = tree[key]
    tree[last] = value
