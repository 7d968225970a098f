"""Load the built-in synthetic sample population into a FHIR server, idempotently.

Every resource is sent as a ``PUT Type/id`` entry of a transaction Bundle, so loading twice updates the
same resources instead of creating duplicates. Medication and Patient go first, then Encounter, then the
resources that reference them, so a server that checks references can resolve them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from fhir_adapter.paths import sample_dir

if TYPE_CHECKING:
    from fhir_adapter.client import FhirClient

# resources referenced by others first; any other *.ndjson file in the folder follows in name order
LOAD_ORDER = ("Medication", "Patient", "Encounter", "Condition", "Observation", "MedicationStatement",
              "MedicationRequest", "MedicationAdministration", "AllergyIntolerance", "DiagnosticReport",
              "Procedure")


class TransactionClient(Protocol):
    """What ``load_sample`` needs of a client: post a transaction Bundle, raise FhirError on failure."""

    def transaction(self, bundle: dict[str, Any]) -> dict[str, Any]: ...


def sample_files(directory: Path | None = None) -> list[Path]:
    """The sample's NDJSON files in load order."""
    folder = directory or sample_dir()
    files = {p.stem: p for p in folder.glob("*.ndjson")}
    ordered = [files.pop(t) for t in LOAD_ORDER if t in files]
    return ordered + [files[k] for k in sorted(files)]


def read_resources(path: Path) -> Iterator[dict[str, Any]]:
    """The resources of one NDJSON file (blank lines skipped)."""
    with path.open("rb") as fh:
        for line in fh:
            if line.strip():
                yield orjson.loads(line)


def _entry(resource: dict[str, Any]) -> dict[str, Any]:
    url = f"{resource['resourceType']}/{resource['id']}"
    return {"fullUrl": url, "resource": resource, "request": {"method": "PUT", "url": url}}


def _bundles(resources: Iterator[dict[str, Any]], batch_size: int) -> Iterator[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    for resource in resources:
        entries.append(_entry(resource))
        if len(entries) >= batch_size:
            yield {"resourceType": "Bundle", "type": "transaction", "entry": entries}
            entries = []
    if entries:
        yield {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def load_sample(client: FhirClient | TransactionClient, directory: Path | None = None, *,
                batch_size: int = 500) -> dict[str, int]:
    """PUT every sample resource into the server behind ``client``; the number of resources sent per type.

    ``directory`` defaults to the sample shipped with the package. Each file is sent in transaction Bundles
    of at most ``batch_size`` entries; a failing Bundle raises the client's ``FhirError`` (the Bundles
    already sent stay loaded; loading again is safe).
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    counts: dict[str, int] = {}
    for path in sample_files(directory):
        n = 0
        for bundle in _bundles(read_resources(path), batch_size):
            client.transaction(bundle)
            n += len(bundle["entry"])
        counts[path.stem] = n
    return counts
