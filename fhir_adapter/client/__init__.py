"""FHIR R4 REST client: search with paging, read, writes and bundles, retries, SMART Backend Services auth."""

from fhir_adapter.client.auth import BearerToken, SmartBackendAuth, smart_configuration
from fhir_adapter.client.bulk import BulkExport, ExportManifest
from fhir_adapter.client.capabilities import Capabilities
from fhir_adapter.client.client import FhirClient, query_string
from fhir_adapter.client.errors import AuthError, PreconditionFailed, ResourceNotFound, outcome_text
from fhir_adapter.client.retry import RetryPolicy
from fhir_adapter.client.search import SearchPage

__all__ = [
    "AuthError",
    "BearerToken",
    "BulkExport",
    "Capabilities",
    "ExportManifest",
    "FhirClient",
    "PreconditionFailed",
    "ResourceNotFound",
    "RetryPolicy",
    "SearchPage",
    "SmartBackendAuth",
    "outcome_text",
    "query_string",
    "smart_configuration",
]
