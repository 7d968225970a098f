"""Write-back to the FHIR server (issue 6): profiles and validation, pure builders, the transaction writer."""
