"""Exports for sponsors: pseudonymised FHIR Bundles of the adapter's results."""
