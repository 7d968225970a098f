"""The patient's medical record number (MRN), read from ``Patient.identifier``, for the ``mrn`` field of a
result line (a research coordinator finds the patient in the hospital's own system by it).

Which identifier is the MRN:

- when the site names its MRN system (``--mrn-system``, or ``mrn_system`` in the site file): the identifiers
  of that system only. A site that names its system knows that other MR-typed identifiers (another
  facility's, a merged hospital's) are not its own;
- otherwise: the identifiers whose ``type`` is coded ``MR`` in the HL7 v2 table 0203
  (``http://terminology.hl7.org/CodeSystem/v2-0203``), whatever their system.

Identifiers with ``use`` ``old`` (a former number) and those without a ``value`` are never the MRN. When the
identifiers left give one value, that is the MRN. When they give several different values, no MRN is chosen
(``None``) and the note says which values disagree: a coordinator must not contact the wrong chart. None
with no note: the Patient holds no such identifier (the adapter never guesses one).
"""

from __future__ import annotations

from typing import Any

V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"


def _typed_mr(identifier: dict[str, Any]) -> bool:
    kind = identifier.get("type")
    codings = kind.get("coding") if isinstance(kind, dict) else None
    return isinstance(codings, list) and any(
        isinstance(c, dict) and c.get("system") == V2_0203 and c.get("code") == "MR" for c in codings)


def mrn_of(patient: dict[str, Any] | None, system: str | None = None) -> tuple[str | None, str | None]:
    """The MRN of a Patient resource (module docstring), and a note when none could be chosen among several.

    ``system``: the site's MRN system; None: the identifiers typed ``MR``."""
    identifiers = (patient or {}).get("identifier")
    if not isinstance(identifiers, list):
        return None, None
    values: list[str] = []
    for i in identifiers:
        if not isinstance(i, dict) or i.get("use") == "old":
            continue
        value = i.get("value")
        if not isinstance(value, str) or not value.strip():
            continue
        chosen = i.get("system") == system if system is not None else _typed_mr(i)
        if chosen and value not in values:
            values.append(value)
    if len(values) == 1:
        return values[0], None
    if not values:
        return None, None
    which = f"of system {system}" if system is not None else f"typed MR ({V2_0203})"
    return None, (f"no MRN chosen: the Patient's identifiers {which} give {len(values)} different values "
                  f"({', '.join(values)}); check the chart")


def mrn_fields(patient: dict[str, Any] | None, system: str | None = None) -> dict[str, Any]:
    """``{"mrn": ...}`` for a result line, with ``mrn_note`` when several MRNs disagree (``mrn_of``)."""
    mrn, note = mrn_of(patient, system)
    return {"mrn": mrn, "mrn_note": note} if note else {"mrn": mrn}
