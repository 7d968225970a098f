"""The population path decides the entry cohort from the Patient, Conditions and Observations before parsing the
rest (``sources.base.Early``): the same result lines as reading every record whole, less work for patients out of
the cohort, and never an answer resting on a type the partial record did not hold."""

from __future__ import annotations

import shutil
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import orjson
import pytest

from fhir_adapter.paths import sample_dir
from fhir_adapter.record.patient_record import IncompleteRecord, PartialRecord, PatientRecord
from fhir_adapter.sources.base import Early
from fhir_adapter.sources.ndjson import NdjsonSource
from fhir_adapter.sources.partition import EARLY_KIND
from fhir_adapter.studies.definition import load_study
from fhir_adapter.studies.screen import screen, screen_entry
from fhir_adapter.terminology.catalog import Catalog

AS_OF = date(2026, 6, 30)
SITE = sample_dir().parent / "site-mappings.json"


def copy_sample(to: Path) -> Path:
    to.mkdir()
    for f in sample_dir().glob("*.ndjson"):
        shutil.copy(f, to / f.name)
    return to


def run(folder: Path, study_id: str, early: bool, study: Any = None) -> tuple[dict[str, bytes], Any]:
    """Every patient's result line, with or without the early decision, and the source's report."""
    study = study or load_study(study_id)
    catalog = Catalog.load(SITE)

    def one(record: PatientRecord) -> tuple[str, bytes]:
        return record.patient_id, orjson.dumps(screen(record, study, catalog, AS_OF))

    def decide(record: PatientRecord) -> tuple[str, bytes] | None:
        result = screen_entry(record, study, catalog, AS_OF)
        return None if result is None else (record.patient_id, orjson.dumps(result))

    with NdjsonSource(folder, workers=2) as source:
        found = dict(source.map_records(one, early=Early(study.entry_reads, decide) if early else None))
    return found, source.report


@pytest.mark.parametrize("study_id", ["NCT07377058", "NCT04966884"])
def test_deciding_early_gives_the_lines_of_reading_everything(tmp_path: Path, study_id: str) -> None:
    folder = copy_sample(tmp_path / "s")
    whole, whole_report = run(folder, study_id, early=False)
    early, early_report = run(folder, study_id, early=True)
    assert early == whole
    out = [pid for pid, line in whole.items() if orjson.loads(line).get("cohort") == "out"]
    assert out  # the sample has patients out of the entry cohort, whose other resources were not parsed
    assert early_report.skipped[EARLY_KIND] > 0 and whole_report.skipped[EARLY_KIND] == 0


def test_a_rule_reading_more_than_the_study_says_costs_speed_never_the_answer(tmp_path: Path) -> None:
    """A study whose entry criteria are said to read Conditions only (I2 reads the anti-MDA5 Observations too):
    every partial record raises IncompleteRecord where I2 asks for Observations, and the whole record is read."""
    folder = copy_sample(tmp_path / "s")
    study = load_study("NCT07377058")
    narrow = replace(study, entry_reads=frozenset({"Condition"}))
    whole, _ = run(folder, "", early=False, study=narrow)
    early, report = run(folder, "", early=True, study=narrow)
    assert early == whole
    assert report.skipped[EARLY_KIND] == 0  # nobody was decided on the partial record


def test_a_condition_filed_among_other_types_is_still_read_first(tmp_path: Path) -> None:
    """The type is read on each line, not from the file's name: a dermatomyositis Condition in the wrong file
    still counts when the entry criterion is decided."""
    folder = copy_sample(tmp_path / "s")
    conditions = (folder / "Condition.ndjson").read_bytes().splitlines()
    moved = [line for line in conditions if b'"Patient/mda5-ild-01"' in line]
    assert moved
    (folder / "Condition.ndjson").write_bytes(b"".join(x + b"\n" for x in conditions if x not in moved))
    with open(folder / "Encounter.ndjson", "ab") as f:
        f.write(b"".join(x + b"\n" for x in moved))
    early, _ = run(folder, "NCT07377058", early=True)
    assert orjson.loads(early["mda5-ild-01"])["status"] == "candidate"


def test_a_partial_record_refuses_every_type_it_was_not_given() -> None:
    record = PartialRecord("p", {"resourceType": "Patient", "id": "p"},
                           {"Condition": [{"resourceType": "Condition", "id": "c"}]}, loaded=frozenset({"Condition"}))
    assert record.of("Condition") and record.can_read("Condition") and not record.can_read("Observation")
    for ask in (lambda: record.of("MedicationStatement"), lambda: record.holds("Encounter"),
                lambda: record.get("MedicationStatement/x")):
        with pytest.raises(IncompleteRecord):
            ask()
    assert record.get("Condition/c") is not None
    try:  # no guard against bad data may turn it into an answer
        record.of("Observation")
    except Exception:
        pytest.fail("IncompleteRecord was caught as an Exception")
    except IncompleteRecord:
        pass
