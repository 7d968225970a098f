"""Which results come from one blood draw: the rule a derived value (a count from a percentage of the white
count) and a test read from several numbers (an IGRA's Nil, TB antigen and Mitogen) rely on."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from fhir_adapter.record.dates import fhir_date


def draw_key(obs: Mapping[str, Any]) -> tuple[str, str] | None:
    """What ties results to one draw: the ``specimen`` reference, or, when the result names none, its effective
    time to the minute (a date alone is not a draw). Results of one draw have equal keys; None ties nothing.

    A result naming a specimen never matches one that names none, so a count is never derived across specimens.
    """
    specimen = obs.get("specimen")
    if specimen is not None:
        reference = specimen.get("reference") if isinstance(specimen, Mapping) else None
        parts = reference.split("/_history/")[0].rstrip("/").split("/") if isinstance(reference, str) else []
        return ("specimen", "/".join(parts[-2:])) if len(parts) >= 2 else None
    when = obs.get("effectiveDateTime", obs.get("effectiveInstant"))
    if not isinstance(when, str) or "T" not in when or fhir_date(when) is None:
        return None
    try:
        moment = datetime.fromisoformat(when.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is not None:
        return ("time", moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ"))
    return ("time", moment.strftime("%Y-%m-%dT%H:%M"))
