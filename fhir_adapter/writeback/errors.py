"""The write-back's exceptions (issue 6)."""

from __future__ import annotations

from fhir_adapter.errors import AdapterError


class WriteBackError(AdapterError):
    """A resource the adapter was about to write fails validation; ``field`` names the element (FHIRPath-like)."""

    def __init__(self, message: str, *, field: str = "", resource: str = "") -> None:
        self.field = field
        self.resource = resource
        where = " ".join(p for p in (resource, field) if p)
        super().__init__(f"{where}: {message}" if where else message)
