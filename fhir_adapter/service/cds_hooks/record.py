"""The record a ``patient-view`` call is screened on: a full read of a FHIR server when the request allows one,
else the prefetch (``prefetch.py``: never complete, so no absence is concluded from it).

A full read is made of the request's ``fhirServer`` only when it is the service's configured FHIR server (read
with the service's own credentials) or on the ``cds_hooks.fhir_servers`` allow-list (read with the request's
``fhirAuthorization`` token). Any other ``fhirServer`` is never contacted. A full read that fails falls back to
the prefetch, said in the card.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from fhir_adapter.errors import AdapterError
from fhir_adapter.record.patient_record import PatientRecord
from fhir_adapter.service.cds_hooks.prefetch import FULL_READ_LABEL, record_from_prefetch

log = logging.getLogger("fhir_adapter.service")


@dataclass
class Read:
    """What a call is screened on: the record, whether it is the full record, and notes for the card."""

    record: PatientRecord | None
    complete: bool
    label: str
    notes: list[str] = field(default_factory=list)


def read_patient(patient_id: str, body: Any, *, evaluator: Any, cds: Any, keys: list[str]) -> Read:
    """The record for ``patient_id``: a full read when ``body.fhirServer`` allows one, else the prefetch."""
    notes: list[str] = []
    server = body.fhirServer.rstrip("/") if body.fhirServer else None
    if server:
        configured = evaluator.settings.fhir_base
        try:
            if configured and server == configured:
                return Read(evaluator.record(patient_id), True, FULL_READ_LABEL)
            if server in cds.fhir_servers:
                token = body.fhirAuthorization.access_token if body.fhirAuthorization else None
                return Read(_read_server(server, token, patient_id, cds.fhir_timeout_seconds), True,
                            FULL_READ_LABEL)
            notes.append("the fhirServer of the request is not on this service's allow-list: not read")
        except AdapterError as e:  # unreachable, refused, or no such Patient there: the prefetch is all there is
            log.warning("CDS Hooks: full read of the fhirServer failed (%s); the prefetch is used", type(e).__name__)
            notes.append(f"the full read of fhirServer failed ({_short(e)})")
    record, more = record_from_prefetch(patient_id, body.prefetch, keys)
    return Read(record, False, "the data the EHR sent with the call (its prefetch)", notes + more)


def _read_server(base: str, token: str | None, patient_id: str, timeout: float) -> PatientRecord:
    from fhir_adapter.client import FhirClient, RetryPolicy
    from fhir_adapter.client.auth import BearerToken
    from fhir_adapter.service.evaluate import PatientNotFound, UpstreamError
    from fhir_adapter.sources.server import ServerSource

    with FhirClient(base, auth=BearerToken(token) if token else None, timeout=(5, timeout),
                    retry=RetryPolicy(max_attempts=2, max_delay=2.0)) as client:
        source = ServerSource(base, client=client, max_failures_in_a_row=1)
        try:
            records = list(source.records([patient_id]))
        except AdapterError as e:
            raise UpstreamError(_short(e)) from None
    if not records:
        raise PatientNotFound("no such Patient on the fhirServer")
    return records[0]


def _short(e: Exception) -> str:
    cause = e.__cause__
    status = getattr(cause, "status", None) or getattr(e, "status", None)
    return f"HTTP {status}" if status else type(e).__name__
