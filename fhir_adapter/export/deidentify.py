"""Pseudonymise the resources the adapter builds (``writeback.build``) for a sponsor: the mission's "exported
(de-identified) FHIR bundles".

What a sponsor receives carries no hospital identifier and no real date:

- **References and identifiers.** ``Patient/123`` and every source reference (``Observation/abc`` in
  ``derivedFrom``, a Provenance entity) become ``Type/<pseudonym>``, an HMAC-SHA256 of the reference under a
  key the hospital keeps (the same key gives the same pseudonyms in every export, so a sponsor can follow a
  patient across exports; without the key nobody can go back). The adapter's identifiers
  (``NCT.../<patient>/...``) get the patient's pseudonym. An identifier of any other system stops the export:
  the adapter does not send what it does not know.
- **Dates.** Every date (structured elements, identifiers and texts alike) moves by the patient's own offset,
  1 to ``max_shift_days`` days back or forward and derived from the key, so intervals within a patient (a
  washout, a 12-month follow-up) stay true. ``dates="keep"`` keeps them (a limited data set under a data use
  agreement).
- **Free text.** Reasons quote source texts (a condition's or a product's label, a procedure's status reason),
  which a hospital cannot vouch for: by default each text element becomes a fixed placeholder and only the
  coded results travel. ``free_text="keep"`` keeps them with dates moved, references pseudonymised and ages of
  90 and over written as "90 or over" (HIPAA Safe Harbor, 45 CFR 164.514(b)(2)(i)(C)).
- ``meta`` keeps only the adapter tag and gains the ``PSEUDED`` security label; narrative ``text`` is dropped.

Resources are rewritten as dicts, never in place; what is rewritten is what ``writeback.build`` makes.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

from fhir_adapter.errors import AdapterError, ConfigError
from fhir_adapter.record.resource_types import rules
from fhir_adapter.writeback.build import CTGOV, OBSERVATION_SYSTEM, SOFTWARE_SYSTEM, SUBJECT_SYSTEM

Resource = dict[str, Any]
PSEUDED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "PSEUDED",
           "display": "pseudonymized"}
FREE_TEXT_REMOVED = "free text removed for export"
MIN_KEY_BYTES = 32
FINGERPRINT_LABEL = "fhir-adapter pseudonym key fingerprint v1"
_DATE = re.compile(r"(?<![0-9])([0-9]{4})-([0-9]{2})-([0-9]{2})(?![0-9])")
_REFERENCE = re.compile(r"^(?:.*/)?([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]*)?$")
_REFERENCE_IN_TEXT = re.compile(r"\b([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})")
_AGE = re.compile(r"\bage ([0-9]{2,3})\b")
_KEPT_SYSTEMS = (CTGOV, SOFTWARE_SYSTEM)  # the study's and the adapter's own: nothing about the patient
_PATIENT_SYSTEMS = (SUBJECT_SYSTEM, OBSERVATION_SYSTEM)  # value "STUDY/<patient id>[/...]"
_TEXT_KEYS = frozenset({"text", "valueString", "display"})  # "display" only outside codings: see _rewrite
_DATE_POLICIES = ("shift", "keep")
_TEXT_POLICIES = ("drop", "keep")


class DeidentificationError(AdapterError):
    """A resource holds something the export cannot make anonymous (an unknown identifier system, a patient
    identifier that is not this patient's); the message names the element."""


class Pseudonymizer:
    """Pseudonyms and date offsets under one key, and the rewriting of one patient's resources."""

    def __init__(self, key: bytes, *, dates: str = "shift", free_text: str = "drop",
                 max_shift_days: int = 182) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ConfigError(f"the pseudonym key has {len(key)} bytes; at least {MIN_KEY_BYTES} are needed "
                              f"(e.g. 'openssl rand -hex 32 > export.key')")
        if dates not in _DATE_POLICIES:
            raise ConfigError(f"dates: {dates!r} is not one of {', '.join(_DATE_POLICIES)}")
        if free_text not in _TEXT_POLICIES:
            raise ConfigError(f"free_text: {free_text!r} is not one of {', '.join(_TEXT_POLICIES)}")
        if max_shift_days < 1:
            raise ConfigError(f"max_shift_days must be at least 1, got {max_shift_days}")
        self._key = key
        self.dates = dates
        self.free_text = free_text
        self.max_shift_days = max_shift_days

    def _mac(self, text: str) -> bytes:
        return hmac.new(self._key, text.encode(), hashlib.sha256).digest()

    def fingerprint(self) -> str:
        """The key's fingerprint, for a manifest: HMAC-SHA256 of the fixed label ``FINGERPRINT_LABEL`` under the key,
        its first 16 hex digits. It names the key without giving it away, and cannot equal a pseudonym's input
        (those are ``Type/id``: the label has no slash)."""
        return self._mac(FINGERPRINT_LABEL).hex()[:16]

    def pseudonym(self, resource_type: str, rid: str) -> str:
        """The export id of ``resource_type/rid``: 32 hex digits, the same for the same key."""
        return self._mac(f"{resource_type}/{rid}").hex()[:32]

    def shift(self, patient_id: str) -> int:
        """The patient's date offset in days: never 0, at most ``max_shift_days`` either way."""
        n = int.from_bytes(self._mac(f"date-shift/{patient_id}")[:8], "big")
        days = 1 + (n >> 1) % self.max_shift_days
        return days if n & 1 else -days

    def reference(self, text: str) -> str:
        """``Type/id`` (relative, absolute or versioned) as ``Type/<pseudonym>``; a Bundle's ``urn:uuid:`` and a
        contained ``#id`` unchanged. Anything else raises ``DeidentificationError``: it is not sent as it is."""
        if text.startswith(("urn:uuid:", "#")):
            return text
        m = _REFERENCE.match(text)
        if not m:
            raise DeidentificationError(f"reference {text[:80]!r} is not Type/id: it cannot be pseudonymised")
        return f"{m.group(1)}/{self.pseudonym(m.group(1), m.group(2))}"

    def patient(self, patient_id: str) -> PatientRewriter:
        return PatientRewriter(self, patient_id)


class PatientRewriter:
    """Rewrites the resources of one patient: that patient's pseudonym and date offset."""

    def __init__(self, pseudonymizer: Pseudonymizer, patient_id: str) -> None:
        self.p = pseudonymizer
        self.patient_id = patient_id
        self.pseudonym = pseudonymizer.pseudonym("Patient", patient_id)
        self.days = pseudonymizer.shift(patient_id) if pseudonymizer.dates == "shift" else 0

    def date_text(self, text: str) -> str:
        """Every YYYY-MM-DD in ``text`` moved by the patient's offset (a time after it is kept as it is)."""
        if not self.days:
            return text

        def moved(m: re.Match[str]) -> str:
            try:
                d = date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
            except ValueError:
                return m.group(0)
            return (d + timedelta(days=self.days)).isoformat()

        return _DATE.sub(moved, text)

    def free_text(self, text: str) -> str:
        if self.p.free_text == "drop":
            return FREE_TEXT_REMOVED
        types = rules().r4_types  # "MedicationAdministration/MedicationStatement" names two types, no resource
        text = _REFERENCE_IN_TEXT.sub(
            lambda m: self.p.reference(m.group(0)) if m.group(1) in types and m.group(2) not in types else
            m.group(0), text)
        text = _AGE.sub(lambda m: "age 90 or over" if int(m.group(1)) >= 90 else m.group(0), text)
        return self.date_text(text)

    def identifier(self, ident: dict[str, Any], where: str) -> dict[str, Any]:
        system, value = ident.get("system"), ident.get("value")
        if system in _KEPT_SYSTEMS:
            return dict(ident)
        if system in _PATIENT_SYSTEMS and isinstance(value, str):
            study, _, rest = value.partition("/")
            pid, sep, tail = rest.partition("/")
            if pid != self.patient_id:
                raise DeidentificationError(f"{where}: identifier {system}|{value} is not patient "
                                            f"{self.patient_id}'s")
            return {**ident, "value": self.date_text(f"{study}/{self.pseudonym}{sep}{tail}")}
        raise DeidentificationError(f"{where}: identifier system {system!r} is not one the export knows; "
                                    f"it is not sent")

    def resource(self, resource: Resource) -> Resource:
        """A pseudonymised copy of ``resource``."""
        where = str(resource.get("resourceType", "resource"))
        out = {k: v for k, v in resource.items() if k not in ("id", "meta", "text")}
        rewritten = self._rewrite(out, where)
        tags = [t for t in (resource.get("meta") or {}).get("tag", ()) if isinstance(t, dict)]
        return {"resourceType": resource["resourceType"], "meta": {"tag": tags, "security": [dict(PSEUDED)]},
                **{k: v for k, v in rewritten.items() if k != "resourceType"}}

    def _rewrite(self, node: Any, where: str) -> Any:
        if isinstance(node, dict):
            out: dict[str, Any] = {}
            coding_like = "system" in node and "code" in node
            for k, v in node.items():
                path = f"{where}.{k}"
                if k == "identifier":
                    out[k] = ([self.identifier(i, path) for i in v] if isinstance(v, list)
                              else self.identifier(v, path))
                elif k == "reference" and isinstance(v, str):
                    out[k] = self.p.reference(v)
                elif k in _TEXT_KEYS and isinstance(v, str) and not (coding_like and k == "display") \
                        and not _adapter_text(node, k):
                    out[k] = self.free_text(v)
                else:
                    out[k] = self._rewrite(v, path)
            return out
        if isinstance(node, list):
            return [self._rewrite(v, where) for v in node]
        if isinstance(node, str):
            return self.date_text(node)
        return node


def _adapter_text(node: dict[str, Any], key: str) -> bool:
    """The adapter's own labels (``Observation.method``, the software agent, a study reference's display)
    carry no patient data."""
    if key == "display" and isinstance(node.get("identifier"), dict):
        return node["identifier"].get("system") in _KEPT_SYSTEMS
    if key == "text" and isinstance(node.get("coding"), list):
        return any(isinstance(c, dict) and c.get("system") == SOFTWARE_SYSTEM for c in node["coding"])
    return False


def read_key(path: Any, env: Callable[[str], str | None]) -> bytes:
    """The pseudonym key from ``path`` (its bytes, surrounding whitespace removed) or, without a path, the
    environment variable FHIR_ADAPTER_PSEUDONYM_KEY."""
    if path:
        try:
            with open(path, "rb") as f:
                return f.read().strip()
        except OSError as exc:
            raise ConfigError(f"pseudonym key file {path}: {exc.strerror}") from None
    value = env("FHIR_ADAPTER_PSEUDONYM_KEY")
    if not value:
        raise ConfigError("a pseudonym key is needed: --key-file FILE or $FHIR_ADAPTER_PSEUDONYM_KEY "
                          "(keep it at the hospital; the same key gives the same pseudonyms)")
    return value.strip().encode()
