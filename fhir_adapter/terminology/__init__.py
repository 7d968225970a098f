"""Terminology as data: the concept catalog, site mappings, qualitative results, units and doses.

Importing this package is cheap: files are read (and ``jsonschema`` imported) only when a catalog loads.
"""

from fhir_adapter.terminology.catalog import Catalog
from fhir_adapter.terminology.concept import CodeEntry, Concept

__all__ = ["Catalog", "CodeEntry", "Concept"]
