"""Re-identification, for the hospital only: the patient behind a Patient pseudonym of a sponsor export.

A pseudonym is a keyed hash, so nothing stores the way back: it is found by recomputing the pseudonym of each
Patient of the source the results came from, under the same key, one Patient at a time (the population is
never held), stopping once every pseudonym asked for is found. ``manifest.check_key`` first refuses a key that
did not make the export, so a wrong key is caught rather than answered with "not found" everywhere.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from fhir_adapter.errors import ConfigError
from fhir_adapter.export.deidentify import Pseudonymizer

V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"  # identifier type; MR = medical record number
_PSEUDONYM = re.compile(r"^(?:(?:.*/)?Patient/)?([0-9a-f]{32})$")


@dataclass(frozen=True)
class Found:
    pseudonym: str
    patient_id: str
    mrns: tuple[str, ...]  # Patient.identifier values typed MR (v2-0203), in their order


def parse_pseudonym(text: str) -> str:
    """``Patient/<32 hex>``, a URL ending in it, or the 32 hex digits alone -> the digits; ``ConfigError``
    for anything else."""
    m = _PSEUDONYM.match(text.strip())
    if not m:
        raise ConfigError(f"{text!r} is not a Patient pseudonym of an export (Patient/ and 32 hex digits)")
    return m.group(1)


def mrns(patient: dict[str, Any]) -> tuple[str, ...]:
    """The values of the Patient's identifiers typed MR (medical record number)."""
    out = []
    for ident in patient.get("identifier") or ():
        if not isinstance(ident, dict) or not isinstance(ident.get("value"), str):
            continue
        codings = ((ident.get("type") or {}).get("coding") or ()) if isinstance(ident.get("type"), dict) else ()
        if any(isinstance(c, dict) and c.get("system") == V2_0203 and c.get("code") == "MR" for c in codings):
            out.append(ident["value"])
    return tuple(out)


def find(pseudonyms: Iterable[str], patients: Iterable[dict[str, Any]], p: Pseudonymizer) -> Iterator[Found]:
    """Each pseudonym's patient among ``patients`` (Patient resources, streamed), as found; stops reading once
    all are found."""
    wanted = set(pseudonyms)
    if not wanted:
        return
    for patient in patients:
        pid = patient.get("id")
        if not isinstance(pid, str):
            continue
        pseudonym = p.pseudonym("Patient", pid)
        if pseudonym in wanted:
            wanted.discard(pseudonym)
            yield Found(pseudonym, pid, mrns(patient))
            if not wanted:
                return  # read no further (a server: no next page)
