"""The service's state: the results feed, the poller's cursors, jobs and their results, and the audit log.

SQLAlchemy Core on SQLite by default (WAL journal, foreign keys on), written so that another database (Postgres)
needs only its URL and, for concurrent writers, its own row locking in ``append_result``. Timestamps are UTC;
JSON values are stored as text (orjson).

The feed has one row per *change* of an assessment: ``append_result`` appends only when the result's content
(minus ``VOLATILE_FIELDS``) differs from the latest entry for the same (study, kind, patient). A re-evaluation
after a crash or a restart therefore appends nothing, and a feed consumer sees each change exactly once.
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    case,
    cast,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    text,
    type_coerce,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import StaticPool

# Top-level result fields that do not make an assessment different: the screening date moves every day an
# evaluation runs ("today"), but the same criteria results and status are the same assessment.
VOLATILE_FIELDS = frozenset({"as_of"})

JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled", "interrupted")

metadata = MetaData()

feed_table = Table(
    "feed", metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("study", String(64), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("patient", String(128), nullable=False),
    Column("status", String(64)),
    Column("content_hash", String(64), nullable=False),
    Column("result", Text, nullable=False),
    Column("origin", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_feed_latest", "study", "kind", "patient", "seq"),
    sqlite_autoincrement=True,  # a seq is never reused, even after the newest row is deleted
)

cursors_table = Table(
    "cursors", metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Text, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

jobs_table = Table(
    "jobs", metadata,
    Column("id", String(32), primary_key=True),
    Column("params", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("done", Integer, nullable=False, default=0),
    Column("total", Integer),
    Column("skipped", Integer, nullable=False, default=0),
    Column("error", Text),
    Column("cancel_requested", Boolean, nullable=False, default=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("owner", String(64)),  # the name of the API key that queued it (the per-key limit)
)

job_results_table = Table(
    "job_results", metadata,
    Column("job_id", String(32), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    Column("ordinal", Integer, primary_key=True),
    Column("patient", String(128), nullable=False),
    Column("result", Text, nullable=False),
)

audit_table = Table(
    "audit", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("action", String(256), nullable=False),
    Column("patient", String(128)),
    Column("status_code", Integer, nullable=False),
    Column("detail", Text),
)

_JOB_FIELDS = {"status", "done", "total", "skipped", "error", "cancel_requested", "started_at", "finished_at",
               "params", "owner"}
ACTIVE_JOB_STATUSES = ("queued", "running")

# columns added after a table was first made: create_all adds them to a database that lacks them
_ADDED_COLUMNS = {"jobs": {"owner": "VARCHAR(64)"}}


def utcnow() -> datetime:
    return datetime.now(UTC)


def _utc(value: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; every timestamp the store hands out is aware UTC."""
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def content_hash(result: dict[str, Any]) -> str:
    """sha256 of the result's canonical JSON (sorted keys) without ``VOLATILE_FIELDS``."""
    stable = {k: v for k, v in result.items() if k not in VOLATILE_FIELDS}
    return hashlib.sha256(orjson.dumps(stable, option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass(frozen=True)
class FeedEntry:
    seq: int
    study: str
    kind: str
    patient: str
    status: str | None
    result: dict[str, Any]
    origin: str
    created_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "study": self.study, "kind": self.kind, "patient": self.patient,
                "status": self.status, "origin": self.origin, "created_at": _iso(self.created_at),
                "result": self.result}


@dataclass(frozen=True)
class Job:
    id: str
    params: dict[str, Any]
    status: str
    done: int
    total: int | None
    skipped: int
    error: str | None
    cancel_requested: bool
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        for k in ("created_at", "started_at", "finished_at", "updated_at"):
            out[k] = _iso(out[k])
        return out


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    patient: str | None
    status_code: int
    detail: str | None


class Store:
    """The service's database. Thread-safe (one connection per operation from SQLAlchemy's pool)."""

    def __init__(self, url: str, *, echo: bool = False):
        self.url = url
        self.engine = _make_engine(url, echo=echo)
        self._is_sqlite = self.engine.dialect.name == "sqlite"
        self._append_lock = threading.Lock()

    # -- lifecycle -------------------------------------------------------------------------------------

    def create_all(self) -> None:
        """Create the tables that are missing, and the columns added since (idempotent)."""
        metadata.create_all(self.engine)
        from sqlalchemy import inspect

        inspector = inspect(self.engine)
        for table, columns in _ADDED_COLUMNS.items():
            have = {c["name"] for c in inspector.get_columns(table)}
            for name, sql_type in columns.items():
                if name not in have:
                    with self._write() as conn:
                        conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {name} {sql_type}")

    def ping(self) -> bool:
        """True when the database answers."""
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

    def close(self) -> None:
        self.engine.dispose()

    def _write(self) -> Any:
        """A write transaction; on SQLite ``BEGIN IMMEDIATE`` so a read-then-write (the feed dedup) is atomic
        across processes too (uvicorn --workers)."""
        conn = self.engine.connect()
        if self._is_sqlite:
            conn.execution_options(sqlite_begin="IMMEDIATE")
        return _Tx(conn)

    # -- results feed ----------------------------------------------------------------------------------

    def append_result(self, study: str, kind: str, patient: str, result: dict[str, Any], origin: str) -> int | None:
        """Append ``result`` to the feed unless it equals (minus volatile fields) the latest entry for
        (study, kind, patient). Returns the new seq, or None when nothing changed."""
        digest = content_hash(result)
        status = result.get("status") if kind == "screening" else result.get("category")
        with self._append_lock, self._write() as conn:
            latest = conn.execute(
                select(feed_table.c.content_hash)
                .where(feed_table.c.study == study, feed_table.c.kind == kind, feed_table.c.patient == patient)
                .order_by(feed_table.c.seq.desc()).limit(1)).scalar()
            if latest == digest:
                return None
            return int(conn.execute(insert(feed_table).values(
                study=study, kind=kind, patient=patient, status=status, content_hash=digest,
                result=orjson.dumps(result).decode(), origin=origin, created_at=utcnow(),
            )).inserted_primary_key[0])

    def feed(self, since: int, limit: int, study: str | None = None, status: str | None = None,
             kind: str | None = None) -> list[FeedEntry]:
        """Entries with seq > ``since`` matching the filters, oldest first, at most ``limit``."""
        q = select(feed_table).where(feed_table.c.seq > since)
        if study is not None:
            q = q.where(feed_table.c.study == study)
        if status is not None:
            q = q.where(feed_table.c.status == status)
        if kind is not None:
            q = q.where(feed_table.c.kind == kind)
        with self.engine.connect() as conn:
            rows = conn.execute(q.order_by(feed_table.c.seq).limit(limit)).all()
        return [FeedEntry(seq=r.seq, study=r.study, kind=r.kind, patient=r.patient, status=r.status,
                          result=orjson.loads(r.result), origin=r.origin, created_at=_utc(r.created_at))
                for r in rows]

    def latest_result(self, study: str, kind: str, patient: str) -> FeedEntry | None:
        """The newest feed entry for (study, kind, patient), or None."""
        with self.engine.connect() as conn:
            r = conn.execute(
                select(feed_table)
                .where(feed_table.c.study == study, feed_table.c.kind == kind, feed_table.c.patient == patient)
                .order_by(feed_table.c.seq.desc()).limit(1)).first()
        if r is None:
            return None
        return FeedEntry(seq=r.seq, study=r.study, kind=r.kind, patient=r.patient, status=r.status,
                         result=orjson.loads(r.result), origin=r.origin, created_at=_utc(r.created_at))

    def last_seq(self) -> int:
        """The newest seq (0 for an empty feed): one primary-key lookup."""
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.max(feed_table.c.seq))).scalar() or 0)

    # -- cursors ---------------------------------------------------------------------------------------

    def get_cursor(self, name: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            value = conn.execute(select(cursors_table.c.value).where(cursors_table.c.name == name)).scalar()
        return None if value is None else orjson.loads(value)

    def set_cursor(self, name: str, value: dict[str, Any]) -> None:
        data = orjson.dumps(value).decode()
        with self._write() as conn:
            done = conn.execute(update(cursors_table).where(cursors_table.c.name == name)
                                .values(value=data, updated_at=utcnow())).rowcount
            if not done:
                conn.execute(insert(cursors_table).values(name=name, value=data, updated_at=utcnow()))

    # -- jobs ------------------------------------------------------------------------------------------

    def create_job(self, params: dict[str, Any], *, owner: str | None = None,
                   max_active: int | None = None) -> str | None:
        """A new queued job; returns its id (32 hex digits). With ``max_active``: None, and no job, when
        ``owner`` already has that many queued or running jobs (counted and inserted in one transaction)."""
        job_id = uuid.uuid4().hex
        now = utcnow()
        with self._write() as conn:
            if max_active is not None and _active_jobs(conn, owner) >= max_active:
                return None
            conn.execute(insert(jobs_table).values(
                id=job_id, params=orjson.dumps(params).decode(), status="queued", done=0, skipped=0,
                cancel_requested=False, created_at=now, updated_at=now, owner=owner))
        return job_id

    def active_jobs(self, owner: str | None) -> int:
        """How many queued or running jobs ``owner`` (an API key's name) has."""
        with self.engine.connect() as conn:
            return _active_jobs(conn, owner)

    def get_job(self, job_id: str) -> Job | None:
        with self.engine.connect() as conn:
            r = conn.execute(select(jobs_table).where(jobs_table.c.id == job_id)).first()
        return None if r is None else _job(r)

    def list_jobs(self, limit: int = 100) -> list[Job]:
        """The newest jobs first."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(jobs_table).order_by(jobs_table.c.created_at.desc(), jobs_table.c.id)
                                .limit(limit)).all()
        return [_job(r) for r in rows]

    def update_job(self, job_id: str, **fields: Any) -> None:
        """Set job fields (status, done, total, skipped, error, cancel_requested, started_at, finished_at,
        params). Raises ValueError for an unknown field or status, KeyError for an unknown job."""
        with self._write() as conn:
            n = conn.execute(update(jobs_table).where(jobs_table.c.id == job_id)
                             .values(**_job_values(fields))).rowcount
        if not n:
            raise KeyError(job_id)

    def transition_job(self, job_id: str, from_statuses: Iterable[str], **fields: Any) -> bool:
        """Set ``fields`` (as ``update_job``) only if the job's status is one of ``from_statuses``, in one
        conditional UPDATE (atomic across processes); whether it was set. False for an unknown job too."""
        with self._write() as conn:
            n = conn.execute(update(jobs_table)
                             .where(jobs_table.c.id == job_id, jobs_table.c.status.in_(list(from_statuses)))
                             .values(**_job_values(fields))).rowcount
        return bool(n)

    def next_queued_job(self) -> Job | None:
        """The oldest queued job, or None (claim it with ``transition_job(id, ["queued"], status="running")``)."""
        with self.engine.connect() as conn:
            r = conn.execute(select(jobs_table).where(jobs_table.c.status == "queued")
                             .order_by(jobs_table.c.created_at, jobs_table.c.id).limit(1)).first()
        return None if r is None else _job(r)

    def interrupt_running_jobs(self, error: str, *, idle_since: datetime | None = None,
                               keep: str | None = None) -> int:
        """Mark running jobs interrupted with ``error``: all of them, or (``idle_since``) those whose heartbeat
        (``updated_at``) is older; never the job ``keep``. Their number."""
        where = [jobs_table.c.status == "running"]
        if idle_since is not None:
            where.append(jobs_table.c.updated_at < idle_since)
        if keep is not None:
            where.append(jobs_table.c.id != keep)
        now = utcnow()
        with self._write() as conn:
            return int(conn.execute(update(jobs_table).where(*where).values(
                status="interrupted", error=error, finished_at=now, updated_at=now)).rowcount)

    def add_job_results(self, job_id: str, rows: Iterable[tuple[str, dict[str, Any]]]) -> None:
        """Append (patient, result) rows to a job's results, numbered on from the last one."""
        rows = list(rows)
        if not rows:
            return
        with self._write() as conn:
            start = conn.execute(select(func.coalesce(func.max(job_results_table.c.ordinal), -1))
                                 .where(job_results_table.c.job_id == job_id)).scalar() + 1
            conn.execute(insert(job_results_table), [
                {"job_id": job_id, "ordinal": start + i, "patient": patient, "result": orjson.dumps(result).decode()}
                for i, (patient, result) in enumerate(rows)])

    def job_results(self, job_id: str, offset: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        """A job's results in order, from ``offset`` (ordinal), at most ``limit``."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(job_results_table.c.result)
                                .where(job_results_table.c.job_id == job_id, job_results_table.c.ordinal >= offset)
                                .order_by(job_results_table.c.ordinal).limit(limit)).scalars().all()
        return [orjson.loads(r) for r in rows]

    def job_result_count(self, job_id: str) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(job_results_table)
                                    .where(job_results_table.c.job_id == job_id)).scalar() or 0)

    def job_status_counts(self, job_id: str) -> dict[str, int]:
        """How many of the job's results have each screening status (one GROUP BY in the database)."""
        column = job_results_table.c.result
        # SQLite reads JSON functions straight from text (a CAST would make it a number); others need the cast
        as_json = type_coerce(column, JSON) if self._is_sqlite else cast(column, JSON)
        status = as_json["status"].as_string()
        with self.engine.connect() as conn:
            rows = conn.execute(select(status, func.count()).where(job_results_table.c.job_id == job_id)
                                .group_by(status)).all()
        return {str(s): int(n) for s, n in sorted(rows, key=lambda r: str(r[0]))}

    def job_cohort_counts(self, job_id: str, entry: Iterable[str]) -> dict[str, int]:
        """How many of the job's results are out of the study's entry cohort, by the entry criterion that ruled
        them out (the first of ``entry`` not met, as ``studies.screen.out_of_cohort_by``; one GROUP BY)."""
        entry = list(entry)
        if not entry:
            return {}
        column = job_results_table.c.result
        as_json = type_coerce(column, JSON) if self._is_sqlite else cast(column, JSON)
        by = case(*((as_json[("criteria", cid, "result")].as_string() == "not-met", cid) for cid in entry))
        with self.engine.connect() as conn:
            rows = conn.execute(select(by, func.count()).where(job_results_table.c.job_id == job_id,
                                                               as_json["cohort"].as_string() == "out")
                                .group_by(by)).all()
        return {str(cid): int(n) for cid, n in sorted(rows, key=lambda r: entry.index(r[0])) if cid is not None}

    def job_patients_done(self, job_id: str) -> set[str]:
        """The patients a job already has a result for (resume skips them)."""
        with self.engine.connect() as conn:
            return set(conn.execute(select(job_results_table.c.patient)
                                    .where(job_results_table.c.job_id == job_id)).scalars())

    def delete_job(self, job_id: str) -> None:
        with self._write() as conn:
            conn.execute(delete(job_results_table).where(job_results_table.c.job_id == job_id))
            conn.execute(delete(jobs_table).where(jobs_table.c.id == job_id))

    # -- audit log -------------------------------------------------------------------------------------

    def audit(self, actor: str, action: str, *, patient: str | None = None, status_code: int,
              detail: str | None = None) -> None:
        """One access: who (a key name, never the key), what (method and route), which patient, the outcome."""
        with self._write() as conn:
            conn.execute(insert(audit_table).values(at=utcnow(), actor=actor, action=action, patient=patient,
                                                    status_code=status_code, detail=detail))

    def audit_many(self, entries: Iterable[dict[str, Any]]) -> None:
        """Several accesses in one transaction: dicts with ``audit``'s arguments and optionally ``at``."""
        rows = [{"at": e.get("at") or utcnow(), "actor": e["actor"], "action": e["action"], "patient": e.get("patient"),
                 "status_code": e["status_code"], "detail": e.get("detail")} for e in entries]
        if rows:
            with self._write() as conn:
                conn.execute(insert(audit_table), rows)

    def audit_entries(self, limit: int = 100) -> list[AuditEntry]:
        """The newest audit entries first."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(audit_table).order_by(audit_table.c.id.desc()).limit(limit)).all()
        return [AuditEntry(id=r.id, at=_utc(r.at), actor=r.actor, action=r.action, patient=r.patient,
                           status_code=r.status_code, detail=r.detail) for r in rows]


class _Tx:
    """``with`` a connection in one transaction: commit on success, roll back on error, always close."""

    def __init__(self, conn: Connection):
        self.conn = conn

    def __enter__(self) -> Connection:
        self.conn.begin()
        return self.conn

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        try:
            if exc_type is None:
                self.conn.commit()
            else:
                self.conn.rollback()
        finally:
            self.conn.close()


def _active_jobs(conn: Connection, owner: str | None) -> int:
    who = jobs_table.c.owner.is_(None) if owner is None else jobs_table.c.owner == owner
    return int(conn.execute(select(func.count()).select_from(jobs_table)
                            .where(who, jobs_table.c.status.in_(ACTIVE_JOB_STATUSES))).scalar_one())


def _job_values(fields: dict[str, Any]) -> dict[str, Any]:
    """Job ``fields`` checked and ready for an UPDATE (params as JSON text, ``updated_at`` now)."""
    unknown = set(fields) - _JOB_FIELDS
    if unknown:
        raise ValueError(f"unknown job fields: {', '.join(sorted(unknown))}")
    if "status" in fields and fields["status"] not in JOB_STATUSES:
        raise ValueError(f"unknown job status {fields['status']!r}")
    values = dict(fields, updated_at=utcnow())
    if "params" in values:
        values["params"] = orjson.dumps(values["params"]).decode()
    return values


def _job(r: Any) -> Job:
    return Job(id=r.id, params=orjson.loads(r.params), status=r.status, done=r.done, total=r.total,
               skipped=r.skipped, error=r.error, cancel_requested=bool(r.cancel_requested),
               created_at=_utc(r.created_at), started_at=_utc(r.started_at), finished_at=_utc(r.finished_at),
               updated_at=_utc(r.updated_at))


def _make_engine(url: str, *, echo: bool) -> Engine:
    if not url.startswith("sqlite"):
        return create_engine(url, echo=echo, pool_pre_ping=True)
    memory = url in ("sqlite://", "sqlite:///:memory:")
    engine = create_engine(url, echo=echo, connect_args={"check_same_thread": False, "timeout": 30},
                           **({"poolclass": StaticPool} if memory else {}))

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # SQLAlchemy emits BEGIN (below), not the driver
        cur = dbapi_conn.cursor()
        if not memory:
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql(f"BEGIN {conn.get_execution_options().get('sqlite_begin', 'DEFERRED')}")

    return engine
