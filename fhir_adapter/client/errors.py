"""The client's ``FhirError`` subclasses, and the text of an OperationOutcome for messages."""

from __future__ import annotations

from typing import Any

from fhir_adapter.errors import FhirError


class ResourceNotFound(FhirError):
    """HTTP 404 or 410 (deleted): the resource is not on the server."""


class PreconditionFailed(FhirError):
    """HTTP 412: a conditional request matched several resources, or ``If-Match`` was stale."""


class AuthError(FhirError):
    """HTTP 401/403, or the token endpoint refused the adapter's credentials."""


class UnreadableAnswer(FhirError):
    """A 2xx answer whose body cannot be read as what was asked for: cut short, not JSON (an HTML page from a
    gateway), or not the resource or Bundle expected. A GET that gets one is sent again like after a 5xx."""


def outcome_text(body: Any) -> str:
    """The issues of an OperationOutcome as one line ("diagnostics; details.text; ..."), "" for anything else."""
    if not isinstance(body, dict) or body.get("resourceType") != "OperationOutcome":
        return ""
    texts: list[str] = []
    for issue in body.get("issue") or ():
        if not isinstance(issue, dict):
            continue
        details = issue.get("details")
        for text in (issue.get("diagnostics"), details.get("text") if isinstance(details, dict) else None):
            if isinstance(text, str) and text and text not in texts:
                texts.append(text)
        if not texts and issue.get("code"):
            texts.append(f"{issue.get('severity', 'error')}: {issue['code']}")
    return "; ".join(texts)


def error_class(status: int) -> type[FhirError]:
    """The exception class for an HTTP error status."""
    if status in (401, 403):
        return AuthError
    if status in (404, 410):
        return ResourceNotFound
    if status == 412:
        return PreconditionFailed
    return FhirError
