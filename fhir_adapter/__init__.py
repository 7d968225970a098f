"""fhir-adapter: anti-MDA5+ dermatomyositis trial screening and response from FHIR R4 data.

Data flow, one package per stage: ``sources`` (FHIR server, Bundle, Bulk NDJSON, $export) ->
``record`` (one patient's resources, references resolved) -> terminology -> study rules and
scores -> write-back and export -> ``cli`` and service.
"""

__version__ = "0.1.0"
