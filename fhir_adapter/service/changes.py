"""Find what changed on a FHIR server since a cursor, by ``_lastUpdated``, using only the server's clock.

Per resource type the cursor (``TypeCursor``) holds ``since``, the newest ``meta.lastUpdated`` processed
(exactly as the server wrote it), and ``seen``, the versions already processed whose lastUpdated lies in
the margin below ``since``. A scan searches ``_lastUpdated=ge(since - overlap)``: the overlap catches a
resource whose lastUpdated is older than ``since`` but that became visible only later (a transaction
committing late, a server whose nodes' clocks differ), and the seen-set keeps the margin from repeating
work already done. The adapter's own clock is never read, so its skew against the server cannot lose a
change.

Pages are read by keyset: sorted by ``_lastUpdated`` ascending, each next query starts at the newest
lastUpdated of the page before (minus ``KEYSET_SLACK``, for servers that round), re-reading only
the resources that share that instant (the seen-set skips them). Offset paging (the
server's next link) would skip a resource when another one moves to the end of the order mid-scan (it
was updated); keyset does not. Offset paging is used only inside a run of equal timestamps longer than a
page, where keyset cannot make progress.

Deletions come from ``Type/_history?_since=``: a DELETE entry names the resource; its patient is read from
the version before (vread). At most ``history_pages`` pages of ``history_count`` entries per type and poll;
more than that in one margin is logged as possibly missed. Searches ask for ``_elements`` = the field that
names the patient, so re-reading the margin costs little.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from fhir_adapter.client import FhirClient, ResourceNotFound, SearchPage
from fhir_adapter.errors import FhirError
from fhir_adapter.identity import written_by_adapter
from fhir_adapter.record.assemble import patient_of
from fhir_adapter.record.resource_types import rules

log = logging.getLogger("fhir_adapter.service.changes")

# Patient and every type the record gathers (mappings/resource-types.json "clinical")
WATCHED_TYPES = ("Patient", "Observation", "Condition", "MedicationStatement", "MedicationRequest",
                 "MedicationAdministration", "AllergyIntolerance", "Procedure", "Encounter", "DiagnosticReport")
# a keyset query restarts this far below the newest lastUpdated of the page before: a server that shows
# instants rounded (not truncated) to milliseconds could otherwise hide a resource behind ``ge``
KEYSET_SLACK = timedelta(milliseconds=1)
CURSOR_VERSION = 1


def parse_instant(value: Any) -> datetime | None:
    """A FHIR instant (``2026-11-22T07:40:43.034Z``, any offset) as an aware UTC datetime, or None."""
    if not isinstance(value, str) or "T" not in value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else None


def format_instant(value: datetime) -> str:
    """``value`` as a FHIR instant in UTC with milliseconds, for a ``_lastUpdated``/``_since`` parameter.

    Rounded down, so that ``ge`` never excludes the instant ``value`` came from.
    """
    value = value.astimezone(UTC)
    value = value.replace(microsecond=value.microsecond // 1000 * 1000)
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class TypeCursor:
    """Where the scan of one resource type stands. ``since`` is a server instant (string, as the server
    wrote it) or None (never scanned: from the beginning); ``seen`` maps ``id/version`` to its lastUpdated."""

    since: str | None = None
    seen: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"since": self.since, "seen": dict(sorted(self.seen.items()))}

    @classmethod
    def from_json(cls, value: Any) -> TypeCursor:
        if not isinstance(value, dict):
            return cls()
        since = value.get("since") if parse_instant(value.get("since")) else None
        seen = value.get("seen") if isinstance(value.get("seen"), dict) else {}
        return cls(since, {str(k): str(v) for k, v in seen.items()})


@dataclass(frozen=True)
class Cursor:
    """The poller's whole position, stored as one JSON value: per type, and the ``floor`` (a server instant:
    resources last updated at or before it are never processed; set when polling started "from now")."""

    types: Mapping[str, TypeCursor] = field(default_factory=dict)
    floor: str | None = None

    def get(self, resource_type: str) -> TypeCursor:
        return self.types.get(resource_type) or TypeCursor()

    def with_type(self, resource_type: str, state: TypeCursor) -> Cursor:
        return replace(self, types={**self.types, resource_type: state})

    def to_json(self) -> dict[str, Any]:
        return {"version": CURSOR_VERSION, "floor": self.floor,
                "types": {t: s.to_json() for t, s in sorted(self.types.items())}}

    @classmethod
    def from_json(cls, value: Any) -> Cursor | None:
        """The cursor stored as ``value``; None when there is none (or it is not one: start afresh)."""
        if not isinstance(value, dict) or value.get("version") != CURSOR_VERSION:
            return None
        types = value.get("types") if isinstance(value.get("types"), dict) else {}
        floor = value.get("floor") if parse_instant(value.get("floor")) else None
        return cls({str(t): TypeCursor.from_json(s) for t, s in types.items()}, floor)


@dataclass(frozen=True)
class Change:
    """One new version of a resource (or its deletion) and the patient it belongs to (None: no patient)."""

    resource_type: str
    id: str
    version: str
    last_updated: str | None
    patient: str | None
    deleted: bool = False
    own: bool = False  # written by the adapter itself (write-back): not clinical input, triggers nothing


@dataclass
class Batch:
    """What one page of a scan found, and the type's cursor once that page is processed."""

    changes: list[Change]
    state: TypeCursor
    repeats: int = 0  # resources on the page already processed (the overlap margin)
    before_floor: int = 0


class ChangeFinder:
    """Scans one resource type for changes since a ``TypeCursor``, page by page.

    ``overlap`` is the margin below the cursor that is searched again; ``page_size`` the ``_count``;
    ``sort=False`` is for a server without ``_sort=_lastUpdated``: every page is read by offset and the
    cursor moves only at the end of the scan. ``deletions`` reads ``_history`` for deleted resources.
    ``max_seen`` caps the seen-set of a type (the cursor is one JSON value): past it, the oldest entries are
    dropped and, if found again in the margin, processed again (a repeat, never a loss).
    """

    def __init__(self, client: FhirClient, *, overlap: timedelta = timedelta(minutes=5), page_size: int = 200,
                 sort: bool = True, deletions: bool = True, history_count: int = 1000,
                 history_pages: int = 10, max_seen: int = 20_000, elements: bool = True,
                 slack: timedelta = KEYSET_SLACK) -> None:
        self.client = client
        self.overlap = overlap
        self.page_size = page_size
        self.sort = sort
        self.deletions = deletions
        self.history_count = history_count
        self.history_pages = history_pages
        self.max_seen = max_seen
        self.elements = elements
        self.slack = slack
        self.margin = max(overlap, slack)  # how far below ``since`` the seen-set must reach

    def scan(self, resource_type: str, state: TypeCursor, floor: datetime | None = None) -> Iterator[Batch]:
        """The batches of changes of ``resource_type`` after ``state``; each carries the state to save once
        it (and every batch before it) has been processed. Resources last updated at or before ``floor`` are
        never changes. Raises ``FhirError`` when the server fails."""
        since = parse_instant(state.since)
        lower = since - self.overlap if since else None
        if lower is not None and floor is not None and lower < floor:
            lower = floor  # nothing older than the floor is ever processed: do not read it again
        tracker = _Tracker(resource_type, state, self.margin, floor, self.max_seen)
        if self.deletions and lower is not None:
            yield tracker.batch(self._deletions(resource_type, lower, tracker))
        params = self._params(resource_type, lower)
        if not self.sort:
            yield from self._scan_unsorted(resource_type, params, tracker)
            return
        while True:
            restart = None
            for page in self.client.search_pages(resource_type, params, count=self.page_size):
                resources = list(page.resources())
                newest = tracker.check_order(resources, page)
                yield tracker.batch(tracker.absorb(resources, page), advance=True)
                if page.next_url(self.client.base_url) is None:
                    return
                if newest is not None and (lower is None or newest - self.slack > lower):
                    restart = newest - self.slack
                    break
                # a run of equal timestamps longer than a page: keyset cannot move, follow the offset link
            if restart is None:
                return
            lower = tracker.previous = restart
            params = self._params(resource_type, lower)

    def _params(self, resource_type: str, lower: datetime | None) -> list[tuple[str, str]]:
        """``_lastUpdated=ge``, ``_sort`` and ``_elements`` (only what names the patient: smaller pages)."""
        params = [("_lastUpdated", f"ge{format_instant(lower)}")] if lower is not None else []
        if self.sort:
            params.append(("_sort", "_lastUpdated"))
        if self.elements:
            fields = ("id",) if resource_type == "Patient" else rules().clinical.get(resource_type, ("subject",))
            params.append(("_elements", ",".join(fields)))
        return params

    def _scan_unsorted(self, resource_type: str, params: list[tuple[str, str]], tracker: _Tracker
                       ) -> Iterator[Batch]:
        pages = self.client.search_pages(resource_type, params, count=self.page_size)
        page = next(pages, None)
        while page is not None:
            following = next(pages, None)
            changes = tracker.absorb(list(page.resources()), page)
            yield tracker.batch(changes, advance=following is None)
            page = following

    def _deletions(self, resource_type: str, lower: datetime, tracker: _Tracker) -> list[Change]:
        """Deleted resources of ``resource_type`` since ``lower``, from ``Type/_history?_since=`` (at most
        ``history_pages`` pages). A next link that lost ``_since`` (SEKMET drops it) gets it back."""
        since = format_instant(lower)
        url: str | None = (f"{self.client.base_url}/{resource_type}/_history?_since={since}"
                           f"&_count={self.history_count}&_elements=id")
        changes: list[Change] = []
        pages = 0
        while url is not None:
            pages += 1
            # a 200 whose body is cut short, not JSON or not a Bundle is sent again like a 5xx (``exchange``)
            bundle = self.client.get_resource(url, "Bundle")
            for entry in bundle.get("entry") or ():
                request = entry.get("request") if isinstance(entry, dict) else None
                if not isinstance(request, dict) or str(request.get("method", "")).upper() != "DELETE":
                    continue
                answer = entry.get("response") if isinstance(entry.get("response"), dict) else {}
                rid = str(request.get("url", "")).split("?")[0].rstrip("/").split("/")[-1]
                version = _etag_version(answer.get("etag"))
                change = tracker.deleted(rid, version, answer.get("lastModified"))
                if change is not None:
                    changes.append(replace(change, patient=self._patient_before(resource_type, rid, version)))
            url = SearchPage(pages, f"GET {url}", bundle).next_url(self.client.base_url)
            if url is not None and "_since=" not in url:
                url += ("&" if "?" in url else "?") + f"_since={since}"
            if url is not None and pages >= self.history_pages:
                log.warning("%s: more than %d history pages in the overlap margin; older deletions may be missed",
                            resource_type, pages)
                break
        return changes

    def _patient_before(self, resource_type: str, rid: str, version: str) -> str | None:
        """The patient of a deleted resource, from its version before the deletion (None if unreadable)."""
        if resource_type == "Patient":
            return rid
        if not version.isdigit() or int(version) < 2:
            return None
        try:
            previous = self.client.get_json(f"{self.client.base_url}/{resource_type}/{rid}/_history/"
                                            f"{int(version) - 1}")
        except ResourceNotFound:
            return None
        return patient_of(previous) if isinstance(previous, dict) else None


class _Tracker:
    """The running state of one type's scan: seen-set, newest instant, order check."""

    def __init__(self, resource_type: str, state: TypeCursor, margin: timedelta, floor: datetime | None,
                 max_seen: int):
        self.resource_type = resource_type
        self.max_seen = max_seen
        self.committed = self.since = state.since
        self.newest = parse_instant(state.since)
        self.seen = dict(state.seen)
        self.margin = margin
        self.floor = floor
        self.previous: datetime | None = None  # the last lastUpdated of the page before (order check)
        self.repeats = 0
        self.before_floor = 0

    def check_order(self, resources: list[dict[str, Any]], page: SearchPage) -> datetime | None:
        """The newest lastUpdated of a sorted page; FhirError when the server ignored ``_sort``."""
        for r in resources:
            at = parse_instant(_meta(r).get("lastUpdated"))
            if at is None:
                continue
            if self.previous is not None and at < self.previous:
                raise FhirError("the server does not return resources in _sort=_lastUpdated order; "
                                "poll with sorting switched off", request=page.where)
            self.previous = at
        return self.previous

    def absorb(self, resources: list[dict[str, Any]], page: SearchPage) -> list[Change]:
        changes = []
        for r in resources:
            if r.get("resourceType") != self.resource_type or not isinstance(r.get("id"), str):
                continue  # an OperationOutcome or an _include: not a change of this type
            meta = _meta(r)
            last = meta.get("lastUpdated") if isinstance(meta.get("lastUpdated"), str) else None
            at = parse_instant(last)
            key = f"{r['id']}/{meta.get('versionId') or last}"
            if key in self.seen:
                self.repeats += 1
                continue
            if at is not None and self.floor is not None and at <= self.floor:
                self.before_floor += 1
                continue
            if at is not None:
                self.seen[key] = last  # type: ignore[assignment]
                if self.newest is None or at > self.newest:
                    self.newest, self.since = at, last
            own = written_by_adapter(r)
            changes.append(Change(self.resource_type, r["id"], str(meta.get("versionId") or last), last,
                                  None if own else patient_of(r), own=own))
        return changes

    def deleted(self, rid: str, version: str, last_modified: Any) -> Change | None:
        key = f"{rid}/{version}"
        at = parse_instant(last_modified)
        if not rid or key in self.seen:
            self.repeats += bool(rid)
            return None
        if at is not None and self.floor is not None and at <= self.floor:
            self.before_floor += 1
            return None
        if at is not None:
            self.seen[key] = str(last_modified)  # never moves ``since``: the history page may be partial
        return Change(self.resource_type, rid, version, str(last_modified) if at else None, None, deleted=True)

    def batch(self, changes: list[Change], *, advance: bool = False) -> Batch:
        """The batch of ``changes``; ``advance`` moves the saved ``since`` to the newest instant seen so far
        (only sound when every resource older than that has been read: sorted pages)."""
        since = self.since if advance else self.committed
        keep_from = parse_instant(since) - self.margin if since else None
        seen = {k: v for k, v in self.seen.items() if keep_from is None or (parse_instant(v) or keep_from) >= keep_from}
        if len(seen) > self.max_seen:  # a burst (a bulk load) in the margin: keep the newest; older ones may repeat
            seen = dict(sorted(seen.items(), key=lambda kv: parse_instant(kv[1]) or datetime.min.replace(tzinfo=UTC),
                               reverse=True)[:self.max_seen])
        self.seen = dict(seen) if advance else self.seen
        batch = Batch(changes, TypeCursor(since, seen), self.repeats, self.before_floor)
        self.repeats = self.before_floor = 0
        return batch


def _meta(resource: dict[str, Any]) -> dict[str, Any]:
    meta = resource.get("meta")
    return meta if isinstance(meta, dict) else {}


def _etag_version(etag: Any) -> str:
    """``2`` from ``W/"2"``."""
    return str(etag or "").removeprefix("W/").strip('"')
