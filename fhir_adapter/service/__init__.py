"""``fhir-adapter serve``: the adapter as a long-running HTTP service that hospital integration engines poll.

Nothing here is imported by the command line until ``serve`` runs (the web framework, the database library and
the metrics client load only then).
"""
