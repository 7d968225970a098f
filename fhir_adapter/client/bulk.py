"""Bulk Data ``$export`` (FHIR Bulk Data Access IG 2.0): kick-off, status polling, manifest, downloads.

Flow: ``GET [base]/$export?_type=...`` with ``Prefer: respond-async`` -> 202 + ``Content-Location`` (the
status URL) -> poll it: 202 (with ``Retry-After`` and ``X-Progress``) until 200 + the JSON manifest ->
download each ``output[].url`` (NDJSON). Epic and Cerner send ``Retry-After`` on the status URL and
expect clients to honour it; a client polling faster may be throttled with 429. A manifest, an error file or
an output file whose answer is cut short is fetched again (``FhirClient.exchange``); a file still cut short
after the retries fails the export, naming the file, rather than be read in part.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import orjson
import requests

from fhir_adapter.client.client import FhirClient, json_body, query_string
from fhir_adapter.client.errors import UnreadableAnswer
from fhir_adapter.client.retry import parse_retry_after
from fhir_adapter.errors import FhirError

log = logging.getLogger("fhir_adapter.client")
_TYPE = re.compile(r"^[A-Z][A-Za-z]{1,63}$")


@dataclass(frozen=True)
class ExportManifest:
    """The completed export: ``output`` and ``error`` entries (``type``, ``url``, optional ``count``)."""

    status_url: str
    transaction_time: str
    request: str
    requires_access_token: bool
    output: list[dict[str, Any]] = field(default_factory=list)
    error: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def parse(cls, body: Any, status_url: str) -> ExportManifest:
        if not isinstance(body, dict) or not isinstance(body.get("output"), list):
            raise FhirError("the $export manifest has no output list", request=f"GET {status_url}")
        files = [o for o in body["output"] if isinstance(o, dict) and isinstance(o.get("url"), str)]
        errors = [o for o in body.get("error") or () if isinstance(o, dict) and isinstance(o.get("url"), str)]
        return cls(status_url, str(body.get("transactionTime") or ""), str(body.get("request") or ""),
                   bool(body.get("requiresAccessToken", True)), files, errors)


class BulkExport:
    """One ``$export`` job on ``client``'s server.

    ``timeout``: seconds from kick-off until the manifest must be there; ``poll_interval``: the wait
    when the server sends no ``Retry-After``; ``max_poll_interval`` caps any wait. ``sleep``/``clock``
    are injectable for tests.
    """

    def __init__(self, client: FhirClient, *, timeout: float = 3600.0, poll_interval: float = 2.0,
                 max_poll_interval: float = 120.0, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.timeout = timeout
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        self.sleep = sleep
        self.clock = clock
        self._started: float | None = None

    def run(self, folder: Path, **kick_off: Any) -> tuple[ExportManifest, list[Path]]:
        """Kick off, wait, download every output file into ``folder``: the manifest and the files."""
        status_url = self.kick_off(**kick_off)
        manifest = self.wait(status_url)
        return manifest, self.download(manifest, folder)

    def kick_off(self, *, level: str = "system", types: Collection[str] | None = None,
                 since: str | datetime | None = None, type_filter: Collection[str] | None = None) -> str:
        """Start the export; the status URL. ``level``: "system", "patient" or "Group/<id>"."""
        path = {"system": "$export", "patient": "Patient/$export"}.get(level)
        if path is None:
            if not re.fullmatch(r"Group/[A-Za-z0-9\-.]{1,64}", level):
                raise ValueError(f"export level {level!r}: use 'system', 'patient' or 'Group/<id>'")
            path = f"{level}/$export"
        params: list[tuple[str, str]] = []
        if types:
            params.append(("_type", ",".join(types)))
        if since is not None:
            params.append(("_since", since.isoformat() if isinstance(since, datetime) else since))
        params.extend(("_typeFilter", f) for f in type_filter or ())
        qs = query_string(params)
        url = f"{self.client.base_url}/{path}" + (f"?{qs}" if qs else "")
        self._started = self.clock()
        response = self.client.request("GET", url, headers={"Accept": "application/fhir+json",
                                                             "Prefer": "respond-async"})
        location = response.headers.get("Content-Location")
        if response.status_code != 202 or not location:
            raise FhirError("the server did not accept the export as an asynchronous job (expected 202 and "
                            "a Content-Location)", request=f"GET {url}", status=response.status_code)
        log.info("$export started: %s", location)
        return urljoin(url, location)

    def wait(self, status_url: str) -> ExportManifest:
        """Poll the status URL until the manifest is there, honouring ``Retry-After``; cancel on timeout."""
        started = self.clock() if self._started is None else self._started
        progress = None
        while True:
            response, body = self.client.exchange("GET", status_url, _status_answer,
                                                  headers={"Accept": "application/json"})
            if response.status_code == 200:
                manifest = ExportManifest.parse(body, status_url)
                log.info("$export complete: %d files, %d error files", len(manifest.output), len(manifest.error))
                return manifest
            if response.headers.get("X-Progress") and response.headers["X-Progress"] != progress:
                progress = response.headers["X-Progress"]
                log.info("$export in progress: %s", progress)
            wait = parse_retry_after(response.headers.get("Retry-After"))
            wait = min(self.poll_interval if wait is None else wait, self.max_poll_interval)
            left = self.timeout - (self.clock() - started)
            if left <= 0 or wait > left:
                self.cancel(status_url)
                raise FhirError(f"$export did not finish within {self.timeout:.0f} s (cancelled)",
                                request=f"GET {status_url}", status=response.status_code)
            self.sleep(wait)

    def download(self, manifest: ExportManifest, folder: Path) -> list[Path]:
        """Stream every output file to ``folder`` as ``Type.NNN.ndjson``; the paths."""
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for n, item in enumerate(manifest.output, start=1):
            rtype = str(item.get("type") or "")
            if not _TYPE.match(rtype):
                raise FhirError(f"the $export manifest names an output of type {rtype!r}",
                                request=f"GET {manifest.status_url}")
            dest = folder / f"{rtype}.{n:03d}.ndjson"
            url = urljoin(manifest.status_url, item["url"])
            count = item.get("count")
            size = self.client.download(url, dest, use_auth=manifest.requires_access_token,
                                        count=count if isinstance(count, int) and not isinstance(count, bool) else None)
            log.info("downloaded %s (%s resources, %d bytes) to %s", url, item.get("count", "?"), size, dest)
            paths.append(dest)
        return paths

    def errors(self, manifest: ExportManifest) -> Iterator[tuple[dict[str, Any], str]]:
        """The OperationOutcome resources of the manifest's ``error`` files, with "url line n" (each file read
        whole, fetched again when cut short: they are small)."""
        for item in manifest.error:
            url = urljoin(manifest.status_url, item["url"])
            content = self.client.exchange("GET", url, _whole_ndjson, headers={"Accept": "application/fhir+ndjson"},
                                           use_auth=manifest.requires_access_token)
            for n, line in enumerate(content.split(b"\n"), start=1):
                if not line.strip():
                    continue
                try:
                    yield orjson.loads(line), f"{url} line {n}"
                except orjson.JSONDecodeError:
                    yield {}, f"{url} line {n}"

    def cancel(self, status_url: str) -> None:
        """``DELETE`` the job (cancel it, or let the server drop its files); failures are only logged."""
        try:
            self.client.request("DELETE", status_url)
        except (FhirError, requests.RequestException) as exc:
            log.info("could not delete the $export job %s: %s", status_url, exc)


def _status_answer(response: requests.Response) -> tuple[requests.Response, Any]:
    """A status poll's answer, with its JSON manifest when it is 200 (``UnreadableAnswer`` when cut short)."""
    return response, json_body(response) if response.status_code == 200 else None


def _whole_ndjson(response: requests.Response) -> bytes:
    """An NDJSON answer read whole; ``UnreadableAnswer`` when its last line is cut short."""
    content = response.content
    last = content.rstrip(b"\n").rsplit(b"\n", 1)[-1]
    if last.strip() and not content.endswith(b"\n"):
        try:
            orjson.loads(last)
        except orjson.JSONDecodeError as exc:
            raise UnreadableAnswer(f"cut short: its last line is not whole JSON ({exc})") from exc
    return content
