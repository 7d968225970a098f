"""``screen_dataframe`` and ``response_dataframe``: the adapter's engine inside Spark, DataFrame API only.

The plan: read the lines (``lines.read_lines``), tell on the JVM what each is (``lines.classify``), one aggregate
for what the driver must know first (``plan.prepare``), then on the JVM again drop the Observations no look-back
reads (before looking for their patient), route the others to their patient, group a Patient with those it
replaced, hash-partition by that group and sort each partition by group, patient, file and line; Python workers
(``mapInArrow``) assemble and screen many patients a call with the command line's own code (``worker.assemble``).
Results equal the command line's. The text is read twice (the driver's aggregate, the main pass).
"""

from __future__ import annotations

import pickle
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import orjson

from fhir_adapter.errors import SourceError
from fhir_adapter.sources.limits import max_line_bytes
from fhir_adapter.sources.prefilter import ObservationPrefilter
from fhir_adapter.sources.report import ReadReport
from fhir_adapter.spark.lines import classify, dated, finish, read_lines, route, typed
from fhir_adapter.spark.plan import prepare
from fhir_adapter.spark.worker import SCHEMA, Task, assemble

RESULT_COLUMNS = ("patient", "mrn", "status", "result")


def grouped(spark: Any, source: Any, engine: Any, report: ReadReport, *, prefilter: ObservationPrefilter | None = None,
            patients: Collection[str] | None = None, name: str | None = None, partitions: int | None = None,
            limit: int | None = None) -> Any:
    """Every patient of ``source`` mapped by ``engine`` (``worker.Task``): a DataFrame of ``worker.SCHEMA`` rows, one
    a result plus one (``patient`` null) for a group that gave none; each group's read report pickled in ``read``
    of its first row. What concerns no patient goes to ``report`` now (this runs one Spark job)."""
    from pyspark.sql import functions as F

    limit = limit or max_line_bytes()
    latest = prefilter.latest.decode() if prefilter is not None else None
    prep = prepare(classify(read_lines(spark, source, limit), latest), report, prefilter, limit,
                   set(patients) if patients is not None else None)
    if not prep.files:
        raise SourceError(f"{name or source}: no NDJSON lines (*.ndjson, *.ndjson.gz, *.jsonl) found")
    blocks = spark.createDataFrame(prep.blocks, "file string, block long, fidx int, base long, first long")
    df = dated(typed(read_lines(spark, source, limit)), latest).join(F.broadcast(blocks), on=["file", "block"])
    df = df.withColumn("line", F.col("base") + F.col("mid") - F.col("first") + 1)
    if prep.first_read:
        decisions = spark.createDataFrame(prep.first_read, "codings string, first_read string")
        df = df.join(F.broadcast(decisions), on="codings", how="left")
        df = df.where(~F.coalesce(F.col("day") < F.col("first_read"), F.lit(False)))
    df = finish(route(df), unusual=False)  # the patient of the lines kept only
    if prep.routes:
        routes = spark.createDataFrame(prep.routes, "file string, mid long, routed string")
        df = df.join(F.broadcast(routes), on=["file", "mid"], how="left")
        df = df.withColumn("pid", F.coalesce(F.col("pid"), F.col("routed")))
    df = df.where(F.col("pid").isNotNull())
    if prep.wanted is not None:
        df = df.where(F.col("pid").isin(sorted(prep.wanted)))
    key = F.col("pid")
    if prep.merges:
        into = spark.createDataFrame(sorted(prep.merges.into.items()), "pid string, survivor string")
        df = df.join(F.broadcast(into), on="pid", how="left")
        key = F.coalesce(F.col("survivor"), F.col("pid"))
    rest = F.concat(F.lpad(F.col("fidx").cast("string"), 5, "0"), F.lpad(F.col("line").cast("string"), 10, "0"),
                    F.col("value")).cast("binary")
    df = df.select(key.alias("key"), "pid", rest.alias("rest"), "fidx", "line")
    df = df.repartition(partitions, "key") if partitions else df.repartition("key")
    task = Task(prep.names, name or str(source), limit, engine, prep.shared, prep.merges)
    return (df.sortWithinPartitions("key", "pid", "fidx", "line").select("key", "pid", "rest")
            .mapInArrow(assemble(task), SCHEMA))


@dataclass(frozen=True)
class ScreenSpec:
    """A screen, built once per Python worker (``build``), as ``fhir-adapter screen`` runs it."""

    study: str
    settings: tuple[tuple[str, Any], ...]
    site: str | None
    as_of: date
    randomization: date
    all_criteria: bool
    horizon: tuple[tuple[str, date], ...] | None

    def load(self) -> tuple[Any, Any]:
        from fhir_adapter.studies.definition import load_study
        from fhir_adapter.terminology.catalog import Catalog

        study = load_study(self.study)
        if self.settings:
            study = study.with_settings(dict(self.settings))
        return study, Catalog.load(self.site)

    def build(self) -> tuple[Any, Any]:
        from fhir_adapter.sources.base import Early
        from fhir_adapter.studies.screen import out_of_cohort_by, screen, screen_entry
        from fhir_adapter.studies.unmapped import UnmappedTally

        study, catalog = self.load()
        horizon = dict(self.horizon) if self.horizon is not None else None

        def row(record: Any, result: dict[str, Any], tally: Any) -> tuple[Any, ...]:
            return (record.patient_id, result.get("mrn"), result["status"], orjson.dumps(result).decode(),
                    (out_of_cohort_by(result, study), tally or None))

        def one(record: Any) -> tuple[Any, ...]:
            tally = UnmappedTally()
            result = screen(record, study, catalog, self.as_of, self.randomization, horizon, tally,
                            all_criteria=self.all_criteria)
            return row(record, result, tally)

        def decide(record: Any) -> tuple[Any, ...] | None:
            tally = UnmappedTally()
            result = screen_entry(record, study, catalog, self.as_of, self.randomization, horizon, tally)
            return None if result is None else row(record, result, tally)

        early = Early(study.entry_reads, decide) if study.entry and study.entry_reads and not self.all_criteria \
            else None
        return one, early


@dataclass(frozen=True)
class ResponseSpec:
    """A treatment-response run, built once per Python worker, as ``fhir-adapter response`` runs it: a patient not
    on the study drug gets status ``not-scored`` and no result line."""

    study: str
    site: str | None
    baseline: date | None
    at: date | None
    course: bool
    every: bool

    def build(self) -> tuple[Any, None]:
        from fhir_adapter.response.respond import Responder
        from fhir_adapter.response.settings import load_settings
        from fhir_adapter.response.tis import load_rules
        from fhir_adapter.studies.evidence import Facts
        from fhir_adapter.studies.unmapped import UnmappedTally
        from fhir_adapter.terminology.catalog import Catalog
        from fhir_adapter.terminology.exposure import DRUG_TYPES

        settings = load_settings()
        study = settings.study(self.study)
        catalog = Catalog.load(self.site)
        responder = Responder(study, settings, load_rules(), catalog, baseline=self.baseline, at=self.at,
                              course=self.course)
        today = date.today()

        def one(record: Any) -> tuple[Any, ...]:
            facts = Facts(record, catalog, today, today)
            tally = UnmappedTally()
            tally.add_records(facts.unmapped_keys())
            if self.every and not responder.on_study_drug(record):
                found = facts.possible(DRUG_TYPES, concepts=[study.drug_concept])
                return (record.patient_id, None, "not-scored", None,
                        {"tally": tally or None, "possibly_on_drug": bool(found)})
            result = responder(record)
            return (record.patient_id, result.get("mrn"), str(result.get("category") or "unknown"),
                    orjson.dumps(result).decode(),
                    {"category": result.get("category"), "inactive": result.get("inactive_disease"),
                     "tally": tally or None})

        return one, None


def screen_dataframe(spark: Any, source: Any, study: str, as_of: date, *, randomization: date | None = None,
                     settings: dict[str, Any] | None = None, site: str | Path | None = None,
                     all_criteria: bool = False, full_history: bool = False, patients: Collection[str] | None = None,
                     report: ReadReport | None = None, partitions: int | None = None, name: str | None = None) -> Any:
    """Screen every patient of ``source`` (an NDJSON folder or file on any path Spark reads, plain or gzip, or a
    DataFrame of raw lines in ``value``) for ``study`` at ``as_of``: a DataFrame (patient, mrn, status, result) with
    the result line as JSON, as ``fhir-adapter screen`` writes it. ``site``: the site mappings file (a path every
    worker can read). What was read and skipped goes to ``report`` (the lines outside any patient at once, each
    patient's as its rows are computed: see ``with_reports``)."""
    from fhir_adapter.studies.lookback import prefilter as lookback

    spec = ScreenSpec(study, tuple(sorted((settings or {}).items())), str(site) if site else None, as_of,
                      randomization or as_of, all_criteria, None)
    loaded_study, catalog = spec.load()
    skip = None if full_history else lookback(loaded_study, catalog, as_of)
    if skip is not None:
        spec = ScreenSpec(spec.study, spec.settings, spec.site, as_of, spec.randomization, all_criteria,
                          tuple(sorted(skip[1].items())))
    df = grouped(spark, source, spec, report if report is not None else ReadReport(),
                 prefilter=skip[0] if skip else None, patients=patients, partitions=partitions, name=name)
    return df.where(df.patient.isNotNull()).select(*RESULT_COLUMNS)


def response_dataframe(spark: Any, source: Any, study: str, *, baseline: date | None = None, at: date | None = None,
                       course: bool = False, site: str | Path | None = None, patients: Collection[str] | None = None,
                       report: ReadReport | None = None, partitions: int | None = None, name: str | None = None) -> Any:
    """Treatment response of every patient of ``source`` (as ``screen_dataframe``): a DataFrame (patient, mrn,
    status, result); status is the TIS class, or ``not-scored`` (no result) for a patient not on the study drug."""
    spec = ResponseSpec(study, str(site) if site else None, baseline, at, course, patients is None)
    df = grouped(spark, source, spec, report if report is not None else ReadReport(), patients=patients,
                 partitions=partitions, name=name)
    return df.where(df.patient.isNotNull()).select(*RESULT_COLUMNS)


def with_reports(rows: Iterator[Any], report: ReadReport) -> Iterator[Any]:
    """The rows of ``grouped`` with each group's read report merged into ``report`` as it passes."""
    for row in rows:
        if row["read"] is not None:
            report.merge(pickle.loads(row["read"]))
        yield row
