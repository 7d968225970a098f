"""Validate a mapping file against its JSON Schema (``mappings/schemas/``), naming the file and the entry.

``jsonschema`` is imported here, inside the function, so importing ``fhir_adapter.terminology`` stays light.
"""

from __future__ import annotations

import hashlib
import os
from functools import cache
from pathlib import Path
from typing import Any

import orjson

from fhir_adapter.errors import ConfigError
from fhir_adapter.paths import data_dir

_TYPE_NAMES = {"string": "a string", "number": "a number", "integer": "an integer", "boolean": "true or false",
               "array": "a list", "object": "an object", "null": "null"}


def display_path(path: Path) -> str:
    """``mappings/concepts/labs.json`` for a file of the package's data, else the path as given."""
    try:
        return str(path.resolve().relative_to(data_dir("mappings").parent))
    except ValueError:
        return str(path)


def read_json(path: Path, label: str | None = None) -> Any:
    """A JSON file's content; a missing or unparsable file raises ConfigError naming it."""
    label = label or display_path(path)
    try:
        return orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise ConfigError(f"{label}: no such file") from None
    except OSError as e:
        raise ConfigError(f"{label}: cannot be read: {e.strerror or e}") from None
    except orjson.JSONDecodeError as e:
        raise ConfigError(f"{label}: not valid JSON: {e}") from None


@cache
def _validator(schema_name: str) -> Any:
    from jsonschema import Draft202012Validator  # heavy: only when a file is validated

    schema = orjson.loads((data_dir("mappings") / "schemas" / schema_name).read_bytes())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def _cache_dir() -> Path:
    """Where documents that passed validation are remembered: ``$FHIR_ADAPTER_CACHE`` or the user's cache."""
    base = os.environ.get("FHIR_ADAPTER_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "fhir-adapter")
    return Path(base) / "validated"


def _fingerprint(document: Any, schema_name: str) -> str:
    schema = (data_dir("mappings") / "schemas" / schema_name).read_bytes()
    return hashlib.sha256(schema + b"\0" + orjson.dumps(document)).hexdigest()


def _seen_valid(key: str) -> bool:
    return (_cache_dir() / key).exists()


def _mark_valid(key: str) -> None:
    try:
        folder = _cache_dir()
        folder.mkdir(parents=True, exist_ok=True)
        (folder / key).touch()
    except OSError:  # a read-only home: validate every time, nothing else changes
        pass


def _entry(document: Any, path: list[Any]) -> tuple[str, list[Any]]:
    """``concepts[3] (id 'ck')`` for the list item a path runs through, and the rest of the path."""
    node, parts = document, []
    for i, step in enumerate(path):
        if isinstance(step, int):
            label = f"{''.join(parts)}[{step}]"
            try:
                item = node[step]
            except (IndexError, KeyError, TypeError):
                item = None
            if isinstance(item, dict):
                for key in ("id", "concept"):
                    if isinstance(item.get(key), str):
                        label += f" ({key} {item[key]!r})"
                        break
            return label, path[i + 1:]
        parts.append(str(step) if not parts else f".{step}")
        try:
            node = node[step]
        except (IndexError, KeyError, TypeError):
            break
    return "", path


def _describe(error: Any, rest: list[Any]) -> str:
    field = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in rest).replace(".[", "[")
    where = f"{field!r} " if field else ""
    if error.validator == "type":
        expected = error.validator_value
        names = [_TYPE_NAMES.get(t, t) for t in (expected if isinstance(expected, list) else [expected])]
        return f"{where}must be {' or '.join(names)}"
    if error.validator == "enum":
        return f"{where}must be one of {', '.join(map(repr, error.validator_value))} (got {error.instance!r})"
    if error.validator == "pattern":
        return f"{where}{error.instance!r} does not match {error.validator_value!r}"
    if error.validator == "oneOf" and isinstance(error.instance, dict):
        return f"{where}needs exactly one of 'code' or 'prefix'"
    return f"{where}{error.message}" if where else error.message


def validate(document: Any, schema_name: str, label: str) -> None:
    """Raise ConfigError listing every place ``document`` breaks ``mappings/schemas/<schema_name>``.

    A document identical to one that already passed against the same schema (``_seen_valid``) is not
    checked again, so a warm start does not import jsonschema; any change to either is checked afresh.
    """
    key = _fingerprint(document, schema_name)
    if _seen_valid(key):
        return
    errors = sorted(_validator(schema_name).iter_errors(document), key=lambda e: list(map(str, e.absolute_path)))
    if not errors:
        _mark_valid(key)
        return
    lines = []
    for error in errors:
        entry, rest = _entry(document, list(error.absolute_path))
        lines.append(f"{label}: {entry + ': ' if entry else ''}{_describe(error, rest)}")
    raise ConfigError("\n".join(lines))
