"""Small-count suppression for a shareable report, with complementary suppression.

The method (README "Reports"):

1. **Primary**: every published count from 1 to ``k - 1`` (``--suppress-below k``, default 11) is shown as
   ``<k``. A zero is shown (it is no small group of people).
2. **What a reader knows**: every additive relation the report states or implies is registered with the
   counts (a table's cells add up to its total, the funnel's steps and what remains add up to those in the
   cohort, the same number shown in two places), and so are the bounds a reader knows for a hidden count:
   ``1..k-1`` for ``<k``, ``k`` or more for ``hidden``. (Inequalities a reader could add, such as a part of
   a criterion never counting more patients than the whole, are not used. A shareable funnel shows no
   running totals: beside a hidden step they would give it away.)
3. **Audit**: the hidden counts are the unknowns of that system. A ``<k`` count is *protected* when another
   whole-number solution exists that satisfies every relation and bound and gives it a different value: it
   then cannot be recovered from the totals or from other cells. The audit looks for that solution along
   the directions of the system's null space (exact rational arithmetic), then by linear programming. The
   search varies only the hidden counts near the one audited and holds the others at their true values,
   which gives it more knowledge than a reader has: it errs on hiding more, never less.
4. **Complementary**: for each count that is not protected, the smallest count of ``k`` or more that shares
   a relation with it is hidden too (shown as ``hidden``), and the audit runs again, until every ``<k``
   count is protected. A row or column with a single hidden count thus always gets a second one. Zeros are
   never hidden (a hidden cell is known to be ``k`` or more).

The library computes which cells to hide; ``report.build`` replaces their values by the labels.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from math import gcd, lcm

Path = tuple[Hashable, ...]

PRIMARY = "primary"
COMPLEMENT = "complement"


@dataclass
class Cells:
    """The counts a report publishes and the additive relations among them that a reader can know.
    ``eq(terms)``: sum(coef * count) == 0."""

    values: dict[Path, int] = field(default_factory=dict)
    eqs: list[dict[Path, int]] = field(default_factory=list)
    dropped: list[dict[Path, int]] = field(default_factory=list)  # relations the counts themselves break

    def cell(self, path: Path, value: int) -> Path:
        if path in self.values and self.values[path] != value:
            raise ValueError(f"cell {path} registered twice with {self.values[path]} and {value}")
        self.values[path] = int(value)
        return path

    def eq(self, terms: Mapping[Path, int]) -> None:
        if self._holds(terms, equal=True):
            self.eqs.append({p: c for p, c in terms.items() if c})

    def total(self, total: Path, parts: Iterable[Path]) -> None:
        """``parts`` add up to ``total`` (each part counted once)."""
        terms: dict[Path, int] = {total: -1}
        for p in parts:
            terms[p] = terms.get(p, 0) + 1
        self.eq(terms)

    def same(self, a: Path, b: Path) -> None:
        if a != b:
            self.eq({a: 1, b: -1})

    def _holds(self, terms: Mapping[Path, int], equal: bool) -> bool:
        """A relation the counts break (result lines that contradict each other) tells a reader nothing true:
        it is kept in ``dropped`` (the tests require none on consistent lines), not used."""
        missing = [p for p in terms if p not in self.values]
        if missing:
            raise ValueError(f"relation names unregistered cells {missing}")
        s = sum(c * self.values[p] for p, c in terms.items())
        if (s != 0) if equal else (s > 0):
            self.dropped.append(dict(terms))
            return False
        return True


def suppress(cells: Cells, k: int) -> dict[Path, str]:
    """Which cells to hide and why: ``{path: "primary" | "complement"}`` (see the module docstring)."""
    if k <= 1:
        return {}
    hidden: dict[Path, str] = {p: PRIMARY for p, v in cells.values.items() if 0 < v < k}
    graph = _Graph(cells)
    while True:
        exposed = [p for p, why in hidden.items() if why == PRIMARY and not _protected(graph, hidden, k, p)]
        if not exposed:
            return hidden
        added = False
        for p in sorted(exposed, key=repr):
            pick = _complement(graph, hidden, p)
            if pick is not None:
                hidden[pick] = COMPLEMENT
                added = True
        if not added:
            raise RuntimeError(f"cannot protect {sorted(exposed, key=repr)[:3]} by hiding more")


class _Graph:
    """The relations as rows of (cell -> coefficient, is an inequality), indexed by cell."""

    def __init__(self, cells: Cells) -> None:
        self.cells = cells
        self.rels: list[tuple[dict[Path, int], bool]] = [(r, False) for r in cells.eqs]  # (relation, inequality)
        self.by_cell: dict[Path, list[int]] = {}
        for i, (rel, _) in enumerate(self.rels):
            for p in rel:
                self.by_cell.setdefault(p, []).append(i)

    def hub(self, p: Path) -> bool:
        """A total shared by many relations (the population, those in the cohort): held fixed when another
        count is audited, never hidden unless nothing else can protect a count."""
        return len(self.by_cell.get(p, ())) > 2


def _complement(graph: _Graph, hidden: Mapping[Path, str], p: Path) -> Path | None:
    """The smallest visible non-zero count that shares a relation with ``p``: equalities first, then
    inequalities, then the counts further along the relations; totals shared by many relations last."""
    values = graph.cells.values
    ring = [p]
    seen = {p}
    for _depth in range(6):
        for want_hub in (False, True):
            for want_le in (False, True):
                options = [q for x in ring for i in graph.by_cell.get(x, ()) if graph.rels[i][1] == want_le
                           for q in graph.rels[i][0] if q not in hidden and values[q] > 0 and graph.hub(q) == want_hub]
                if options:
                    return min(options, key=lambda q: (values[q], repr(q)))
        nxt = [q for x in ring for i in graph.by_cell.get(x, ()) for q in graph.rels[i][0] if q not in seen]
        seen.update(nxt)
        ring = list(dict.fromkeys(nxt))
        if not ring:
            break
    return None


def _protected(graph: _Graph, hidden: Mapping[Path, str], k: int, target: Path) -> bool:
    """Whether another whole-number solution (or, failing a quick find, another solution of the linear
    relaxation) gives ``target`` a different value while every relation and bound holds. Only the hidden
    counts near ``target`` (along relations, not through shared totals) may vary; holding the others at
    their true values gives the reader more knowledge than the report does, so a count found protected
    this way is protected."""
    values = graph.cells.values
    vary = {target}
    todo = [target]
    while todo and len(vary) < 40:
        x = todo.pop(0)
        if x != target and graph.hub(x):
            continue
        for i in graph.by_cell.get(x, ()):
            if graph.rels[i][1]:  # inequalities bound the counts that vary; they do not add more
                continue
            for q in graph.rels[i][0]:
                if q in hidden and q not in vary:
                    vary.add(q)
                    todo.append(q)
    index: dict[Hashable, int] = {}
    lo: list[int] = []
    hi: list[int | None] = []
    val: list[int] = []

    def var(key: Hashable, value: int, low: int, high: int | None) -> int:
        index[key] = len(val)
        val.append(value)
        lo.append(low)
        hi.append(high)
        return index[key]

    for p in sorted(vary, key=repr):
        primary = hidden[p] == PRIMARY
        var(p, values[p], 1 if primary else k, k - 1 if primary else None)
    rows: list[dict[int, Fraction]] = []
    rhs: list[Fraction] = []
    used = sorted({i for p in vary for i in graph.by_cell.get(p, ())})
    for i in used:
        rel, is_le = graph.rels[i]
        row = {index[p]: Fraction(c) for p, c in rel.items() if p in vary}
        known = -sum(c * values[p] for p, c in rel.items() if p not in vary)
        if is_le:  # sum + slack == known, slack >= 0
            slack = known - sum(int(c) * val[j] for j, c in row.items())
            row[var(("slack", i), int(slack), 0, None)] = Fraction(1)
        rows.append(row)
        rhs.append(Fraction(known))
    pivots = _rref(rows)
    t = index[target]
    if t in pivots:
        directions = [j for j in pivots[t] if j != t]
        if not directions:
            return False  # the relations alone give it
    else:
        directions = [t]
    pivot_of_free: dict[int, list[int]] = {}
    for pv, row in pivots.items():
        for f in row:
            if f != pv:
                pivot_of_free.setdefault(f, []).append(pv)
    if any(_moves(f, pivots, pivot_of_free, val, lo, hi) for f in directions):
        return True
    return _lp_moves(t, rows, rhs, val, lo, hi)


def _lp_moves(target: int, rows: list[dict[int, Fraction]], rhs: list[Fraction], val: list[int],
              lo: list[int], hi: list[int | None]) -> bool:
    """Whether the relations and bounds allow ``target`` a value at least one away from the true one, in the
    linear relaxation (the relations here are few: the neighbourhood of one count)."""
    n = len(val)
    uppers = [j for j in range(n) if hi[j] is not None]
    width = n + len(uppers)
    a_rows: list[list[float]] = []
    b: list[float] = []
    for r, row in enumerate(rows):  # y = x - lo >= 0; a finite upper bound becomes y + z = hi - lo
        line = [0.0] * width
        for j, c in row.items():
            line[j] = float(c)
        a_rows.append(line)
        b.append(float(rhs[r]) - sum(float(c) * lo[j] for j, c in row.items()))
    for u, j in enumerate(uppers):
        line = [0.0] * width
        line[j] = 1.0
        line[n + u] = 1.0
        a_rows.append(line)
        b.append(float(hi[j] - lo[j]))  # type: ignore[operator]
    now = val[target] - lo[target]
    for sign in (1.0, -1.0):
        cost = [0.0] * width
        cost[target] = sign
        best = _simplex_max(a_rows, b, cost)
        if best is not None and best > sign * now + 0.5:
            return True
    return False


def _simplex_max(a: list[list[float]], b: list[float], c: list[float]) -> float | None:
    """max c.y subject to a y = b, y >= 0 (two phases, Bland's rule); None when infeasible. Unbounded gives
    +inf. Small dense problems only (one component of a report's relations)."""
    m, n = len(a), len(c)
    eps = 1e-9
    rows = []
    for i in range(m):
        sgn = -1.0 if b[i] < 0 else 1.0
        rows.append([sgn * x for x in a[i]] + [1.0 if k == i else 0.0 for k in range(m)] + [sgn * b[i]])
    basis = [n + i for i in range(m)]
    width = n + m

    def solve(cost: list[float], allowed: int) -> bool:
        while True:
            z = [sum(cost[basis[i]] * rows[i][j] for i in range(m)) - cost[j] for j in range(width)]
            enter = next((j for j in range(allowed) if z[j] < -eps and j not in basis), None)
            if enter is None:
                return True
            ratios = [(rows[i][-1] / rows[i][enter], basis[i], i) for i in range(m) if rows[i][enter] > eps]
            if not ratios:
                return False  # unbounded
            _, _, leave = min(ratios)
            piv = rows[leave][enter]
            rows[leave] = [x / piv for x in rows[leave]]
            for i in range(m):
                if i != leave and abs(rows[i][enter]) > eps:
                    f = rows[i][enter]
                    rows[i] = [x - f * y for x, y in zip(rows[i], rows[leave], strict=True)]
            basis[leave] = enter

    solve([0.0] * n + [-1.0] * m, width)  # phase 1: drive the artificials out
    if sum(rows[i][-1] for i in range(m) if basis[i] >= n) > 1e-7:
        return None
    for i in range(m):  # pivot remaining (zero) artificials out where possible
        if basis[i] >= n:
            j = next((j for j in range(n) if abs(rows[i][j]) > eps and j not in basis), None)
            if j is not None:
                piv = rows[i][j]
                rows[i] = [x / piv for x in rows[i]]
                for k in range(m):
                    if k != i and abs(rows[k][j]) > eps:
                        f = rows[k][j]
                        rows[k] = [x - f * y for x, y in zip(rows[k], rows[i], strict=True)]
                basis[i] = j
    if not solve(list(c) + [0.0] * m, n):
        return float("inf")
    return sum(c[basis[i]] * rows[i][-1] for i in range(m) if basis[i] < n)


def _moves(free: int, pivots: Mapping[int, dict[int, Fraction]], pivot_of_free: Mapping[int, list[int]],
           val: list[int], lo: list[int], hi: list[int | None]) -> bool:
    """Whether the true values moved by ± the smallest whole step along the null-space direction of ``free``
    stay within every bound (then another whole-number solution exists)."""
    d: dict[int, Fraction] = {free: Fraction(1)}
    for pv in pivot_of_free.get(free, ()):
        d[pv] = -pivots[pv][free]
    den = lcm(*(q.denominator for q in d.values()))
    ints = {j: int(q * den) for j, q in d.items()}
    g = 0
    for x in ints.values():
        g = gcd(g, x)
    step = {j: x // g for j, x in ints.items()}
    for sign in (1, -1):
        if all(lo[j] <= val[j] + sign * s and (hi[j] is None or val[j] + sign * s <= hi[j])  # type: ignore[operator]
               for j, s in step.items()):
            return True
    return False


def _rref(rows: list[dict[int, Fraction]]) -> dict[int, dict[int, Fraction]]:
    """Gauss-Jordan on sparse rows (the right-hand side is not needed: only the null space matters).
    Returns {pivot variable: its row, normalised so the pivot's coefficient is 1}."""
    pivots: dict[int, dict[int, Fraction]] = {}
    for row in rows:
        row = dict(row)
        for pv, prow in pivots.items():  # reduce by the existing pivots
            c = row.get(pv)
            if c:
                for j, x in prow.items():
                    y = row.get(j, Fraction(0)) - c * x
                    if y:
                        row[j] = y
                    else:
                        row.pop(j, None)
        if not row:
            continue
        pv = min(row)
        c = row[pv]
        row = {j: x / c for j, x in row.items()}
        for other, orow in pivots.items():  # keep the earlier rows reduced
            c2 = orow.get(pv)
            if c2:
                for j, x in row.items():
                    y = orow.get(j, Fraction(0)) - c2 * x
                    if y:
                        orow[j] = y
                    else:
                        orow.pop(j, None)
            pivots[other] = orow
        pivots[pv] = row
    return pivots
