"""CDS Hooks 2.0 for the EHR: discovery, the ``patient-view`` service, its cards and its JWT authentication."""
