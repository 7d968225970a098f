"""The result line's JSON Schema (profiles/result-line.schema.json), the main contract of the command line and the
service: every line the sample gives validates (both studies; screen default, short out-of-cohort lines included,
and --all-criteria; response, with --course), and a broken line does not."""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator

from fhir_adapter.cli.main import main

SCHEMA = Path(__file__).resolve().parent.parent / "profiles" / "result-line.schema.json"
STUDIES = ("NCT07377058", "NCT04966884")


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def lines(capsysbinary: pytest.CaptureFixture[bytes], *args: str) -> list[dict[str, Any]]:
    logger = logging.getLogger("fhir_adapter")
    saved = logger.handlers[:], logger.level, logger.propagate
    try:
        assert main(list(args)) == 0
    finally:
        logger.handlers[:], logger.level, logger.propagate = saved
    return [orjson.loads(x) for x in capsysbinary.readouterr().out.splitlines()]


def errors(validator: Draft202012Validator, line: dict[str, Any]) -> list[str]:
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(line)]


@pytest.mark.parametrize("study", STUDIES)
@pytest.mark.parametrize("extra", [(), ("--all-criteria",), ("--randomization", "2026-07-14")])
def test_every_screen_line_of_the_sample_validates(validator: Draft202012Validator, study: str,
                                                   extra: tuple[str, ...],
                                                   capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    found = lines(capsysbinary, "screen", "--study", study, "--source", "sample", "--as-of", "2026-06-30", *extra)
    assert len(found) == 108
    for line in found:
        assert not errors(validator, line), (line["patient"], errors(validator, line))
    short = [x for x in found if x.get("cohort") == "out" and len(x["criteria"]) == 1]
    assert bool(short) == (extra != ("--all-criteria",))  # the short out-of-cohort lines were checked too


@pytest.mark.parametrize("study", STUDIES)
@pytest.mark.parametrize("extra", [(), ("--course",)])
def test_every_response_line_of_the_sample_validates(validator: Draft202012Validator, study: str,
                                                     extra: tuple[str, ...],
                                                     capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    found = lines(capsysbinary, "response", "--study", study, "--source", "sample", *extra)
    assert found
    for line in found:
        assert not errors(validator, line), (line["patient"], errors(validator, line))


def test_a_response_without_baseline_and_an_mrn_conflict_validate(validator: Draft202012Validator) -> None:
    line = {"patient": "Patient/p1", "mrn": None, "mrn_note": "no MRN chosen: ...", "study": "NCT07377058",
            "baseline": None, "follow_up": None, "tis": None, "tis_range": None, "category": None, "responder": None,
            "inactive_disease": None, "measures": None, "endpoints": None, "problems": ["baseline unknown"]}
    assert not errors(validator, line)


def _broken(line: dict[str, Any], how: str) -> dict[str, Any]:
    bad = copy.deepcopy(line)
    if how == "no status":
        del bad["status"]
    elif how == "eligible":
        bad["status"] = "eligible"
    elif how == "criterion result":
        next(iter(bad["criteria"].values()))["result"] = "probably"
    elif how == "no mrn":
        del bad["mrn"]
    elif how == "cohort":
        bad["cohort"] = "maybe"
    elif how == "out but candidate":
        bad.update(cohort="out", status="candidate")
    elif how == "unknown field":
        bad["eligible"] = True
    elif how == "patient":
        bad["patient"] = "p1"
    return bad


@pytest.mark.parametrize("how", ["no status", "eligible", "criterion result", "no mrn", "cohort",
                                 "out but candidate", "unknown field", "patient"])
def test_a_broken_screen_line_does_not_validate(validator: Draft202012Validator, how: str,
                                                capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    (line,) = lines(capsysbinary, "screen", "--study", "NCT07377058", "--source", "sample", "--as-of", "2026-06-30",
                    "--patient", "mda5-ild-02-local")
    assert not errors(validator, line)
    assert errors(validator, _broken(line, how))


def test_a_broken_response_line_does_not_validate(validator: Draft202012Validator,
                                                  capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    line = lines(capsysbinary, "response", "--study", "NCT04966884", "--source", "sample")[0]
    for key, value in (("category", "huge"), ("tis", 140), ("tis_range", [1]), ("mrn", 12)):
        assert errors(validator, {**line, key: value}), key
    assert errors(validator, {k: v for k, v in line.items() if k != "tis_range"})
