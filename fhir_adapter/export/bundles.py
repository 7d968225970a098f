"""One result line of ``screen`` or ``response`` -> one pseudonymised FHIR Bundle (type ``collection``) for a
sponsor: the resources write-back would write (``writeback.build``), pseudonymised (``deidentify``), then
checked as write-back checks what it writes (``validate.check``: JSON Schema, FHIR R4 model, codes).

The Bundle carries no clock time: a real export time beside shifted dates would give the shift away, so the
Provenance is dated at the result's own date (the screening date, the follow-up date), shifted with the rest.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from fhir_adapter.export.deidentify import PSEUDED, DeidentificationError, Pseudonymizer
from fhir_adapter.writeback import build
from fhir_adapter.writeback.validate import check

Resource = dict[str, Any]
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "http://fhir-adapter.org/fhir/export")


def kind_of(result: Any) -> str:
    """``screening`` or ``response``; anything else raises ``DeidentificationError``."""
    if not isinstance(result, dict) or not isinstance(result.get("patient"), str) or "study" not in result:
        raise DeidentificationError("not a result line of screen or response (no 'patient' and 'study')")
    if "criteria" in result and "status" in result:
        return "screening"
    if isinstance(result.get("follow_up"), dict) and result["follow_up"].get("date"):
        return "response"
    raise DeidentificationError(f"{result['patient']}: neither a screening result (criteria, status) nor a "
                                f"response result with a follow-up date")


def _resources(result: dict[str, Any], kind: str) -> tuple[list[Resource], str]:
    if kind == "screening":
        return build.screening_resources(result), str(result["as_of"])
    return build.response_observations(result), str(result["follow_up"]["date"])


def sponsor_bundle(result: dict[str, Any], pseudonymizer: Pseudonymizer) -> Resource:
    """The pseudonymised Bundle of one result. Raises ``DeidentificationError`` or ``WriteBackError`` (naming
    the element) rather than return anything half-made."""
    kind = kind_of(result)
    patient_id = result["patient"].removeprefix("Patient/")
    resources, anchor = _resources(result, kind)
    rewriter = pseudonymizer.patient(patient_id)
    exported = [rewriter.resource(r) for r in resources]
    urls = [f"urn:uuid:{uuid.uuid5(_NAMESPACE, r['identifier'][0]['value'])}" for r in exported]
    sources = [result["patient"]] + [d["reference"] for r in resources for d in r.get("derivedFrom") or ()]
    recorded = datetime.fromisoformat(anchor[:10]).replace(tzinfo=UTC)
    provenance = rewriter.resource(build.provenance(urls, sources, result["study"], recorded))
    for resource in (*exported, provenance):
        check(resource)
    entries = [{"fullUrl": u, "resource": r} for u, r in zip(urls, exported, strict=True)]
    entries.append({"fullUrl": f"urn:uuid:{uuid.uuid5(_NAMESPACE, '|'.join(urls))}", "resource": provenance})
    bundle = {"resourceType": "Bundle", "id": str(uuid.uuid5(_NAMESPACE, f"{kind}|{'|'.join(urls)}")),
              "meta": {"security": [dict(PSEUDED)]}, "type": "collection", "entry": entries}
    return bundle
