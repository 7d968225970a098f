"""The driver's part, before any patient is assembled: one aggregate over the classified lines (``lines.classify``)
gives what every worker needs and what the read report counts outside any patient, as pass 1 of the command line
(``sources.partition.map_grouped``) does:

- each file split's line count, so every line gets its number in its file (messages name ``file line N``);
- the distinct coding lists of the Observations the look-back prefilter may skip, each decided once here by the
  command line's own ``ObservationPrefilter`` (the decisions go back to the JVM as a small broadcast table);
- the lines dropped because no criterion reads their type, counted;
- the few lines the JVM could not route (``unusual``), routed here by the command line's router: shared
  Medications, ``Patient.link`` merges, lines that cannot be read (counted and named, or kept for their
  patient's record as the command line keeps them).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fhir_adapter.record.merged import Merges, resolve
from fhir_adapter.sources.partition import RouteResult, _partners, _Router, file_type
from fhir_adapter.sources.prefilter import ObservationPrefilter
from fhir_adapter.sources.report import ReadReport


@dataclass
class Prepared:
    """What the driver learnt; ``files`` are sorted as the command line sorts them (its order within a patient)."""

    files: list[str] = field(default_factory=list)  # paths, by index
    names: list[str] = field(default_factory=list)
    blocks: list[tuple[str, int, int, int, int]] = field(default_factory=list)  # file, block, fidx, first line, mid
    first_read: list[tuple[str, str]] = field(default_factory=list)  # codings -> first date read
    routes: list[tuple[str, int, str]] = field(default_factory=list)  # file, mid, pid of the unusual lines
    shared: dict[str, dict[str, Any]] = field(default_factory=dict)
    merges: Merges = field(default_factory=Merges)
    wanted: set[str] | None = None  # --patient, with the Patients merged with them


def prepare(df: Any, report: ReadReport, prefilter: ObservationPrefilter | None, limit: int,
            patients: set[str] | None = None) -> Prepared:
    """Run the aggregate over ``df`` (classified lines) and fill ``report`` with what concerns no patient."""
    from pyspark.sql import functions as F

    S, L = F.lit(None).cast("string"), F.lit(None).cast("long")

    def key(tag: str, file: Any = S, block: Any = L, text: Any = S, day: Any = S, mid: Any = L) -> Any:
        return F.struct(F.lit(tag).alias("tag"), file.alias("file"), block.alias("block"), text.alias("text"),
                        day.alias("day"), mid.alias("mid"))

    keys = F.array_compact(F.array(
        key("b", F.col("file"), F.col("block")),
        F.when(F.col("codings").isNotNull(), key("c", text=F.col("codings"), day=F.col("day"))),
        F.when(F.col("quiet").isNotNull(), key("q", text=F.col("quiet"))),
        F.when(F.col("unusual"), key("u", F.col("file"), F.col("block"), F.col("value"), F.col("day"), F.col("mid"))),
    ))
    rows = (df.select(F.explode(keys).alias("k"), "mid", "name").groupBy("k")
            .agg(F.count(F.lit(1)).alias("n"), F.min("mid").alias("first"), F.first("name").alias("name")).collect())
    out = Prepared()
    blocks: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
    names: dict[str, str] = {}
    codings: dict[str, list[tuple[str, int]]] = defaultdict(list)
    quiet: dict[str, int] = defaultdict(int)
    unusual: list[tuple[str, int, int, str]] = []
    for r in rows:
        k = r["k"]
        if k["tag"] == "b":
            blocks[k["file"]].append((k["block"], r["n"], r["first"]))
            names[k["file"]] = r["name"]
        elif k["tag"] == "c":
            codings[k["text"]].append((k["day"], r["n"]))
        elif k["tag"] == "q":
            quiet[k["text"]] += r["n"]
        else:
            unusual.append((k["file"], k["block"], k["mid"], k["text"]))
    out.files = sorted(blocks, key=lambda p: Path(p.removeprefix("file:")))
    out.names = [names[f] for f in out.files]
    first_line: dict[tuple[str, int], tuple[int, int]] = {}
    for fidx, f in enumerate(out.files):
        running = 0
        for block, n, first in sorted(blocks[f]):
            out.blocks.append((f, block, fidx, running, first))
            first_line[(f, block)] = (running, first)
            running += n

    skipped = 0
    if prefilter is not None:
        for text, days in codings.items():
            first = prefilter._decide(text.encode())
            if first is not None:
                out.first_read.append((text, first.decode()))
                skipped += sum(n for day, n in days if day.encode() < first)
    fidx_of = {f: i for i, f in enumerate(out.files)}
    router = _Router([Path(n) for n in out.names], [], Path("."), 1, None, None, limit)
    routed = RouteResult(0)
    for f, block, mid, text in sorted(unusual, key=lambda u: (fidx_of[u[0]], u[2])):
        line = text.encode()
        if prefilter is not None and line.startswith(b'{"resourceType":"Observation",') and prefilter.skips(line):
            continue  # counted with its coding list above, as the JVM drops it
        base, first = first_line[(f, block)]
        number = base + mid - first + 1
        router.file_type = file_type(Path(out.names[fidx_of[f]]))
        routed.problems, routed.link_problems, routed.lost = [], [], []
        pid = router._patient(line, number, routed)
        where = f"{out.names[fidx_of[f]]} line {{}}"
        for rel, kind, reason, resource in routed.problems:
            report.skip(where.format(rel), reason, resource, kind=kind)
        for rel, p, why in routed.link_problems:
            report.note(where.format(rel), f"Patient/{p}: {why}", kind="Patient.link not followed")
        for rel, why in routed.lost:
            report.patient_not_read(None, where.format(rel), f"a Patient line that cannot be read ({why})",
                                    kind="Patient resource unreadable")
        if pid is not None:
            out.routes.append((f, mid, pid.decode()))
    for kind, n in routed.quiet.items():
        quiet[kind] += n
    for kind, n in sorted(quiet.items()):
        report.ignore(kind, n)
    if skipped:
        report.ignore(ObservationPrefilter.kind, skipped)
    out.shared = routed.shared
    out.merges = resolve((old, new) for _, old, new in routed.links)
    for pid, why in sorted(out.merges.problems.items()):
        report.note("Patient.link", f"Patient/{pid}: {why}", kind="Patient.link not followed")
    if out.shared:
        report.count_read("Medication", len(out.shared))
    if patients is not None:
        out.wanted = set(patients) | _partners(out.merges, set(patients))
    return out
