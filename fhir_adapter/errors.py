"""The adapter's exceptions. The library raises these; only the command line prints them."""

from __future__ import annotations


class AdapterError(Exception):
    """Base of every error the adapter raises on purpose."""


class SourceError(AdapterError):
    """A source cannot be opened or read at all (not one bad resource: those are skipped and counted)."""


class ConfigError(AdapterError):
    """A settings, mapping or study file is invalid; the message names the file and the entry."""


class FhirError(AdapterError):
    """A FHIR server request failed.

    ``request`` names it ("GET http://.../Observation?patient=1"), ``status`` is the HTTP status (None for
    a connection error or timeout) and ``outcome`` the server's OperationOutcome text, when it sent one.
    """

    def __init__(self, message: str, *, request: str = "", status: int | None = None, outcome: str = ""):
        self.request = request
        self.status = status
        self.outcome = outcome
        parts = [message]
        if request:
            parts.append(f"request: {request}")
        if status is not None:
            parts.append(f"HTTP {status}")
        if outcome:
            parts.append(f"server said: {outcome}")
        super().__init__("; ".join(parts))
