"""How far back each criterion reads Observations, from the study file's ``observation_lookback``, and the
population-path prefilter built from it (``sources.prefilter``).

The horizon of a concept is S minus its look-back: the first date a criterion reads its Observations. An
Observation whose concepts all have a horizon after its date is never read, so a population screen need not
parse it. ``Facts`` holds the same horizon and raises if a rule asks for older results, so a wrong entry in
the study file makes a criterion unknown instead of deciding it on a partial history.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from fhir_adapter.sources.prefilter import ObservationPrefilter
from fhir_adapter.studies.definition import Study
from fhir_adapter.terminology.catalog import Catalog

NEVER = "9999-12-31"  # the first date read of an Observation that maps to no concept: no criterion reads it
# (unless its code display names one: a criterion then points at it as a possible match, within its look-back)


def horizon(study: Study, as_of: date) -> dict[str, date]:
    """Concept id -> the first date any criterion reads its Observations (empty: the study lists none)."""
    out = {}
    for concept, days in study.lookback.items():
        n = study.setting(days) if isinstance(days, str) else days
        out[concept] = as_of - timedelta(days=int(n))
    return out


def prefilter(study: Study, catalog: Catalog, as_of: date) -> tuple[ObservationPrefilter, dict[str, date]] | None:
    """The prefilter for screening ``study`` at ``as_of`` and the horizon to give ``screen``; None when the
    study lists no look-backs (every Observation is read)."""
    first = horizon(study, as_of)
    if not first:
        return None
    iso = {c: d.isoformat() for c, d in first.items()}

    def first_read(codings: list[Any]) -> str | None:
        cc = {"coding": codings}
        ids = [c.id for c in catalog.classify(cc)]
        if not ids and not catalog.is_ignored(cc):
            named = catalog.named(cc)
            ids = [*named.concepts, *(c.id for k in named.classes for c in catalog.members(k))]
        if not ids:
            return NEVER
        dates = [iso.get(c) for c in ids]
        return None if None in dates else min(dates)  # type: ignore[type-var]

    return ObservationPrefilter(first_read, max(iso.values())), first
