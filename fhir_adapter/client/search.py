"""One page of a search: the Bundle, where it came from, and the entries a caller should read."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

# search.mode: "match" (a hit), "include" (pulled in by _include), "outcome" (the server's remarks, e.g.
# SEKMET's and HAPI's "Unknown search parameter ... ignored"). Servers that omit search.mode send matches.
READ_MODES = frozenset({None, "match", "include"})


@dataclass(frozen=True)
class SearchPage:
    """Page ``number`` (1-based) of a search, fetched by ``request`` ("GET http://...")."""

    number: int
    request: str
    bundle: dict[str, Any]

    @property
    def where(self) -> str:
        """How messages name a resource of this page: "GET http://.../Observation?... (page 2)"."""
        return f"{self.request} (page {self.number})"

    def entries(self) -> Iterator[dict[str, Any]]:
        for entry in self.bundle.get("entry") or ():
            if isinstance(entry, dict):
                yield entry

    def resources(self) -> Iterator[dict[str, Any]]:
        """The resources of "match" and "include" entries (or entries without a search.mode)."""
        for entry in self.entries():
            search = entry.get("search")
            mode = search.get("mode") if isinstance(search, dict) else None
            if mode in READ_MODES and "resource" in entry:
                yield entry["resource"]

    def outcomes(self) -> Iterator[dict[str, Any]]:
        """The OperationOutcome resources the server put in the page with search.mode "outcome"."""
        for entry in self.entries():
            search = entry.get("search")
            if isinstance(search, dict) and search.get("mode") == "outcome" and isinstance(entry.get("resource"), dict):
                yield entry["resource"]

    def next_url(self, base_url: str) -> str | None:
        """The absolute URL of the Bundle.link with relation "next", or None on the last page."""
        for link in self.bundle.get("link") or ():
            if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
                return urljoin(base_url + "/", link["url"])
        return None
