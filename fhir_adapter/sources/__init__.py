"""Sources: where FHIR resources come from, all behind one streaming interface (``Source``)."""

from fhir_adapter.sources.base import Source
from fhir_adapter.sources.open import open_source
from fhir_adapter.sources.report import ReadReport

__all__ = ["ReadReport", "Source", "open_source"]
