"""Criterion rules by group; each registers itself by name (``base.rule``) for the study file to use."""

from fhir_adapter.studies.criteria import (  # noqa: F401 - imported to register their rules
    demographics,
    diagnosis,
    human,
    infections,
    info,
    labs,
    lung,
    medications,
    other,
    reproductive,
)
from fhir_adapter.studies.criteria.base import INFORMATION, RULES, Ctx, information, rule

__all__ = ["INFORMATION", "RULES", "Ctx", "information", "rule"]
