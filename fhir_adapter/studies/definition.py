"""Study definitions are data: ``studies/<id>.json`` holds each criterion's protocol line, rule, windows,
thresholds, value sets (catalog concept ids and drug classes) and the settings that resolve the protocol's
ambiguities, each with its documented default.

A study names its **entry criteria** (``entry_cohort``): the inclusion criteria that define who is screened at
all (PROMIS-MDA5: I2, anti-MDA5-positive dermatomyositis). ``screen`` evaluates them first; a patient for whom
one is decided ``not-met`` is out of the entry cohort and gets a short result (``studies.screen``), as a cohort
tool builds its entry cohort before counting each inclusion rule within it.

A study may also list ``information`` items: facts reported beside the criteria for a coordinator (e.g. the
current glucocorticoid dose), each computed by an information rule (``criteria.base.information``); they
never affect a criterion or the status. A criterion's ``source`` says where it comes from when that is not
the registered eligibility text (NCT04966884: derived from the study description).

Loading checks the structure cheaply in Python (no jsonschema at screening time); the full JSON Schema
(``studies/schemas/study.schema.json``) is checked by ``check_schema`` (tests, and whoever edits a study file).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import orjson

from fhir_adapter.errors import ConfigError
from fhir_adapter.paths import data_dir

KINDS = ("inclusion", "exclusion")
DECIDED_BY = ("machine", "partial", "person")


@dataclass(frozen=True, slots=True)
class CriterionDef:
    """One criterion or part of a criterion as the study file gives it."""

    id: str
    kind: str
    text: str
    protocol: str
    rule: str | None
    decided_by: str
    params: dict[str, Any] = field(default_factory=dict)
    parts: tuple[CriterionDef, ...] = ()
    combine: str = "any"
    source: str | None = None


@dataclass(frozen=True, slots=True)
class InformationDef:
    """One informational output: reported for a person, never part of the status."""

    id: str
    text: str
    protocol: str
    rule: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Study:
    id: str
    title: str
    aliases: tuple[str, ...]
    criteria: tuple[CriterionDef, ...]
    settings: dict[str, Any]
    setting_docs: dict[str, str]
    path: str
    information: tuple[InformationDef, ...] = ()
    lookback: dict[str, str | int] = field(default_factory=dict)  # concept -> setting name or days (see lookback.py)
    entry: tuple[str, ...] = ()  # the entry criteria (top-level inclusion ids), evaluated first, in this order
    entry_reads: frozenset[str] = frozenset()  # the resource types (besides Patient) the entry criteria read

    def setting(self, name: str) -> Any:
        try:
            return self.settings[name]
        except KeyError:
            raise ConfigError(f"{self.path}: no setting {name!r}") from None

    def with_settings(self, overrides: dict[str, Any]) -> Study:
        unknown = sorted(set(overrides) - set(self.settings))
        if unknown:
            raise ConfigError(f"unknown study setting(s) {', '.join(unknown)}; known: {', '.join(self.settings)}")
        return Study(self.id, self.title, self.aliases, self.criteria, {**self.settings, **overrides},
                     self.setting_docs, self.path, self.information, self.lookback, self.entry, self.entry_reads)

    def all_ids(self) -> list[str]:
        return [c.id for c in self.criteria] + [p.id for c in self.criteria for p in c.parts]


def studies_dir() -> Path:
    return data_dir("studies")


def study_files() -> list[Path]:
    return sorted(p for p in studies_dir().glob("*.json"))


def find_study(name: str) -> Path:
    """The study file for an id ("NCT07377058"), an alias ("promis-mda5") or a path."""
    candidate = Path(name)
    if candidate.suffix == ".json" and candidate.is_file():
        return candidate
    wanted = name.strip().lower()
    for path in study_files():
        doc = orjson.loads(path.read_bytes())
        if wanted == str(doc.get("id", "")).lower() or wanted in (a.lower() for a in doc.get("aliases", ())):
            return path
    known = ", ".join(p.stem for p in study_files())
    raise ConfigError(f"unknown study {name!r} (known: {known})")


@cache
def load_study(name: str) -> Study:
    """Read and check a study file (cached per process)."""
    path = find_study(name)
    try:
        doc = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON: {e}") from None
    return parse_study(doc, str(path))


def _criterion(raw: Any, where: str, errors: list[str], kind: str | None = None) -> CriterionDef | None:
    if not isinstance(raw, dict):
        errors.append(f"{where}: must be an object")
        return None
    for key in ("id", "text", "protocol"):
        if not isinstance(raw.get(key), str) or not raw.get(key):
            errors.append(f"{where}: {key!r} must be a non-empty string")
    k = raw.get("kind", kind)
    if k not in KINDS:
        errors.append(f"{where}: 'kind' must be one of {KINDS}")
    decided_by = raw.get("decided_by", "machine")
    if decided_by not in DECIDED_BY:
        errors.append(f"{where}: 'decided_by' must be one of {DECIDED_BY}")
    parts = []
    for i, p in enumerate(raw.get("parts", ())):
        c = _criterion(p, f"{where}.parts[{i}]", errors, k)
        if c:
            parts.append(c)
    if not raw.get("rule") and not parts:
        errors.append(f"{where} ({raw.get('id')}): needs a 'rule' or 'parts'")
    params = raw.get("params", {})
    if not isinstance(params, dict):
        errors.append(f"{where}: 'params' must be an object")
        params = {}
    source = raw.get("source")
    if source is not None and (not isinstance(source, str) or not source):
        errors.append(f"{where}: 'source' must be a non-empty string")
    return CriterionDef(str(raw.get("id")), str(k), str(raw.get("text", "")), str(raw.get("protocol", "")),
                        raw.get("rule"), decided_by, params, tuple(parts), raw.get("combine", "any"),
                        source if isinstance(source, str) and source else None)


def _information(raw: Any, where: str, errors: list[str]) -> InformationDef | None:
    if not isinstance(raw, dict):
        errors.append(f"{where}: must be an object")
        return None
    for key in ("id", "text", "protocol", "rule"):
        if not isinstance(raw.get(key), str) or not raw.get(key):
            errors.append(f"{where}: {key!r} must be a non-empty string")
    params = raw.get("params", {})
    if not isinstance(params, dict):
        errors.append(f"{where}: 'params' must be an object")
        params = {}
    return InformationDef(str(raw.get("id")), str(raw.get("text", "")), str(raw.get("protocol", "")),
                          str(raw.get("rule", "")), params)


def _entry(raw: Any, criteria: list[CriterionDef], label: str, errors: list[str]) -> tuple[tuple[str, ...],
                                                                                       frozenset[str]]:
    """The entry criteria: top-level inclusion criteria a machine can decide ``not-met`` (never one only a
    person decides: no data rules a patient out by it), and the resource types they read (``reads``: a population
    screen may decide them before parsing the other types; a wrong list costs speed, never a wrong answer)."""
    if raw is None:
        return (), frozenset()
    reads = raw.get("reads", []) if isinstance(raw, dict) else []
    if not isinstance(reads, list) or not all(isinstance(t, str) and t for t in reads):
        errors.append(f"{label}: entry_cohort: 'reads' is a list of resource types")
        reads = []
    ids = raw.get("criteria") if isinstance(raw, dict) else None
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids) \
            or not isinstance(raw.get("doc"), str) or not raw["doc"]:
        errors.append(f"{label}: entry_cohort needs 'criteria' (a list of criterion ids) and 'doc'")
        return (), frozenset()
    top = {c.id: c for c in criteria}
    for cid in ids:
        c = top.get(cid)
        if c is None:
            errors.append(f"{label}: entry_cohort: {cid!r} is not a top-level criterion")
        elif c.kind != "inclusion" or c.decided_by == "person":
            errors.append(f"{label}: entry_cohort: {cid} must be an inclusion criterion a machine can decide")
    if len(set(ids)) != len(ids):
        errors.append(f"{label}: entry_cohort: duplicate criterion ids")
    return tuple(ids), frozenset(reads)


def parse_study(doc: Any, label: str) -> Study:
    """Check a study document's structure and the rules it names; ConfigError lists every problem."""
    from fhir_adapter.studies.criteria import INFORMATION, RULES

    errors: list[str] = []
    if not isinstance(doc, dict):
        raise ConfigError(f"{label}: a study file is a JSON object")
    for key in ("id", "title", "criteria", "settings"):
        if key not in doc:
            errors.append(f"{label}: missing {key!r}")
    settings: dict[str, Any] = {}
    docs: dict[str, str] = {}
    for name, spec in (doc.get("settings") or {}).items():
        if not isinstance(spec, dict) or "default" not in spec or not spec.get("doc"):
            errors.append(f"{label}: settings.{name} needs 'default' and 'doc'")
            continue
        settings[name] = spec["default"]
        docs[name] = spec["doc"]
        choices = spec.get("choices")
        if choices is not None and spec["default"] not in choices:
            errors.append(f"{label}: settings.{name}: default {spec['default']!r} is not one of {choices}")
    criteria = []
    for i, raw in enumerate(doc.get("criteria") or ()):
        c = _criterion(raw, f"{label}: criteria[{i}]", errors)
        if c:
            criteria.append(c)
    information = []
    for i, raw in enumerate(doc.get("information") or ()):
        item = _information(raw, f"{label}: information[{i}]", errors)
        if item:
            information.append(item)
    for item in information:
        if item.rule and item.rule not in INFORMATION:
            errors.append(f"{label}: information {item.id}: unknown information rule {item.rule!r}")
        for name in item.params.get("settings", ()):
            if name not in settings:
                errors.append(f"{label}: information {item.id}: uses setting {name!r}, which 'settings' does not "
                              "define")
    ids = [c.id for c in criteria] + [p.id for c in criteria for p in c.parts] + [i.id for i in information]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        errors.append(f"{label}: duplicate criterion or information ids {dupes}")
    for c in [*criteria, *(part for top in criteria for part in top.parts)]:
        if c.rule and c.rule not in RULES:
            errors.append(f"{label}: {c.id}: unknown rule {c.rule!r}")
        for name in c.params.get("settings", ()):
            if name not in settings:
                errors.append(f"{label}: {c.id}: uses setting {name!r}, which 'settings' does not define")
    entry, entry_reads = _entry(doc.get("entry_cohort"), criteria, label, errors)
    lookback = (doc.get("observation_lookback") or {}).get("concepts") or {}
    for concept, days in lookback.items():
        if isinstance(days, str) and not isinstance(settings.get(days), int):
            errors.append(f"{label}: observation_lookback.{concept}: {days!r} is not a setting with a number of days")
        elif not isinstance(days, str) and not (isinstance(days, int) and days >= 0):
            errors.append(f"{label}: observation_lookback.{concept}: give a setting name or a number of days")
    if errors:
        raise ConfigError("\n".join(errors))
    return Study(str(doc["id"]), str(doc["title"]), tuple(doc.get("aliases", ())), tuple(criteria), settings, docs,
                 label, tuple(information), dict(lookback), entry, entry_reads)


def check_schema(doc: Any, label: str = "study") -> None:
    """Validate against ``studies/schemas/study.schema.json`` (imports jsonschema: not for the hot path)."""
    from jsonschema import Draft202012Validator

    schema = orjson.loads((studies_dir() / "schemas" / "study.schema.json").read_bytes())
    errors = sorted(Draft202012Validator(schema).iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        raise ConfigError("\n".join(f"{label}: {'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors))
