"""One patient's record: the Patient and its clinical resources, gathered from any source."""

from fhir_adapter.record.assemble import assemble_record
from fhir_adapter.record.patient_record import PatientRecord, SetAside

__all__ = ["PatientRecord", "SetAside", "assemble_record"]
