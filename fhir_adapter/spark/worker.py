"""The Python worker's part: each patient's lines, grouped and ordered by Spark, assembled and mapped by the command
line's own pass-2 code (``sources.partition._assemble_groups``: merged Patients, the early entry decision, lines
that cannot be read, ``assemble_record``), many patients to one ``mapInArrow`` call.

A partition arrives sorted by group (a Patient and those it replaced) and, within it, by patient, file and line:
a group is complete when the next one starts, so a group spanning two Arrow batches is still read whole.
"""

from __future__ import annotations

import gc
import pickle
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fhir_adapter.record.merged import Merges
from fhir_adapter.sources.base import Early
from fhir_adapter.sources.partition import Plan, _assemble_groups
from fhir_adapter.sources.reading import Unit
from fhir_adapter.sources.report import ReadReport

SCHEMA = ("key string, anchor string, seq int, patient string, mrn string, status string, result string, "
          "payload binary, read binary")
_BUILT: dict[Any, tuple[Callable[[Any], Any], Early | None]] = {}  # engine spec -> its functions, once a worker


@dataclass
class Task:
    """What every worker needs: the file names by index, the shared resources and merges found on the driver, and
    the engine: a spec with ``build()`` (typed result columns: ``(patient, mrn, status, result, extra)``) or a
    pair ``(fn, early)`` whose results travel pickled in ``payload``."""

    names: list[str]
    source: str
    limit: int
    engine: Any
    shared: dict[str, dict[str, Any]] = field(default_factory=dict)
    merges: Merges = field(default_factory=Merges)


def _engine(engine: Any) -> tuple[Callable[[Any], Any], Early | None, bool]:
    if isinstance(engine, tuple):
        fn, early = engine
        return fn, early, False
    built = _BUILT.get(engine)
    if built is None:
        built = _BUILT[engine] = engine.build()
    return built[0], built[1], True


def _with_patient(fn: Callable[[Any], Any], early: Early | None) -> tuple[Callable[[Any], Any], Early | None]:
    """``fn`` and ``early.decide`` returning ``(patient id, result)``, so each result knows whose it is."""

    def one(record: Any) -> Any:
        return record.patient_id, fn(record)

    if early is None:
        return one, None
    decide = early.decide

    def first(record: Any) -> Any:
        out = decide(record)
        return None if out is None else (record.patient_id, out)

    return one, Early(early.types, first)


def assemble(task: Task) -> Callable[[Iterator[Any]], Iterator[Any]]:
    """The ``mapInArrow`` function: batches of (key, pid, line) in, result rows (``SCHEMA``) out."""

    def run(batches: Iterator[Any]) -> Iterator[Any]:
        import pyarrow as pa

        fn, early, typed = _engine(task.engine)
        fn, early = _with_patient(fn, early)
        n = len(task.names)
        plan = Plan([Path(name) for name in task.names], [Unit(i, 0, 0) for i in range(n)], Path("."), 1,
                    task.source, limit=task.limit, early=early)
        plan.line_base, plan.shared, plan.merges = [0] * n, task.shared, task.merges
        names = ("key", "anchor", "seq", "patient", "mrn", "status", "result", "payload", "read")
        cols: dict[str, list[Any]] = {k: [] for k in names}

        def flush(key: str, groups: dict[bytes, list[bytes]]) -> None:
            report = ReadReport()
            results = _assemble_groups(plan, fn, groups, report)
            read = pickle.dumps(report, protocol=5)
            whole = key.encode() in groups  # the survivor is here: every result stands at its place
            for seq, (pid, res) in enumerate(results or [(None, None)]):
                if typed and res is not None:
                    patient, mrn, status, result, extra = res
                else:
                    patient, mrn, status, result = pid, None, None, None
                    extra = res
                cols["key"].append(key)
                cols["anchor"].append(key if whole or pid is None else pid)
                cols["seq"].append(seq)
                cols["patient"].append(patient)
                cols["mrn"].append(mrn)
                cols["status"].append(status)
                cols["result"].append(result)
                cols["payload"].append(None if extra is None else pickle.dumps(extra, protocol=5))
                cols["read"].append(read)
                read = None

        def batch() -> Any:
            out = pa.RecordBatch.from_pydict(cols, schema=schema)
            for v in cols.values():
                v.clear()
            return out

        schema = pa.schema([("key", pa.string()), ("anchor", pa.string()), ("seq", pa.int32()),
                            ("patient", pa.string()), ("mrn", pa.string()), ("status", pa.string()),
                            ("result", pa.string()), ("payload", pa.binary()), ("read", pa.binary())])
        gc_was_enabled = gc.isenabled()
        gc.disable()  # parsed resources hold no cycles (as in the command line's pass 2)
        try:
            current: str | None = None
            groups: dict[bytes, list[bytes]] = {}
            for b in batches:
                keys, pids, lines = (b.column(i).to_pylist() for i in range(3))
                for key, pid, line in zip(keys, pids, lines, strict=True):
                    if key != current:
                        if current is not None:
                            flush(current, groups)
                        current, groups = key, {}
                    group = groups.get(pid.encode())
                    if group is None:
                        groups[pid.encode()] = [line]
                    else:
                        group.append(line)
                if cols["key"]:
                    yield batch()
            if current is not None:
                flush(current, groups)
            if cols["key"]:
                yield batch()
        finally:
            if gc_was_enabled:
                gc.enable()

    return run
