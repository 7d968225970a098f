"""The configured FHIR server, described once: ``server_block(settings)`` is its base URL, auth, timeout and
retry policy as plain data; ``client(block)`` the FhirClient built from it. The service's evaluator builds its
client this way, and so does a job's process (``jobs_worker``), which gets the block on its standard input
(never on its command line or in its environment). Imports only the engine, so the job process stays light.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fhir_adapter.client import FhirClient
    from fhir_adapter.service.settings import ServiceSettings


def server_block(settings: ServiceSettings) -> dict[str, Any]:
    """The FHIR server of ``settings``: base, token, SMART (when configured), timeout and retry."""
    block: dict[str, Any] = {
        "base": settings.fhir_base, "token": settings.token.get_secret_value() if settings.token else None,
        "timeout": [5, settings.fhir_timeout_seconds],
        "retry": {"max_attempts": settings.fhir_max_attempts, "max_delay": 10.0}}
    if settings.smart_client_id:
        block["smart"] = {"client_id": settings.smart_client_id, "key": str(settings.smart_key),
                          "alg": settings.smart_alg, "token_url": settings.smart_token_url,
                          "scope": settings.smart_scope}
    return block


def client(block: dict[str, Any], sleep: Callable[[float], None] | None = None) -> FhirClient:
    """A FhirClient for ``block``; ``sleep`` is the retry policy's wait (to count retries)."""
    from fhir_adapter.client import FhirClient

    return FhirClient(block["base"], **client_options(block, sleep))


def client_options(block: dict[str, Any], sleep: Callable[[float], None] | None = None) -> dict[str, Any]:
    """FhirClient options from ``block``: auth (SMART Backend Services or a bearer token), timeout, retry."""
    from fhir_adapter.client import RetryPolicy

    options: dict[str, Any] = {"auth": _auth(block)}
    if block.get("retry"):
        options["retry"] = RetryPolicy(**block["retry"], **({"sleep": sleep} if sleep else {}))
    if block.get("timeout"):
        options["timeout"] = tuple(block["timeout"])
    return options


def _auth(block: dict[str, Any]) -> Any:
    smart = block.get("smart")
    if smart and smart.get("client_id"):
        from fhir_adapter.client.auth import SmartBackendAuth

        key = Path(smart["key"]).read_bytes()
        return SmartBackendAuth(smart.get("token_url"), smart["client_id"], key, alg=smart.get("alg", "RS384"),
                                scope=smart.get("scope", "system/*.read"))
    if block.get("token"):
        from fhir_adapter.client.auth import BearerToken

        return BearerToken(block["token"])
    return None
