"""The sample population's screening (PROMIS-MDA5) and response (NCT04966884) results, as JSON lines give them."""

from __future__ import annotations

from datetime import date

import orjson
import pytest

from fhir_adapter.paths import sample_dir
from fhir_adapter.response.respond import Responder
from fhir_adapter.response.settings import load_settings
from fhir_adapter.response.tis import load_rules
from fhir_adapter.sources import open_source
from fhir_adapter.studies.definition import load_study
from fhir_adapter.studies.screen import screen
from fhir_adapter.terminology.catalog import Catalog

AS_OF = date(2026, 6, 30)


@pytest.fixture(scope="session")
def sample_results() -> list[dict]:
    catalog = Catalog.load(sample_dir().parent / "site-mappings.json")
    study = load_study("NCT07377058")
    settings = load_settings()
    responder = Responder(settings.study("NCT04966884"), settings, load_rules(), catalog)
    out = []
    with open_source("sample") as source:
        for record in source.records():
            out.append(orjson.loads(orjson.dumps(screen(record, study, catalog, AS_OF, AS_OF))))
            if responder.on_study_drug(record):
                out.append(orjson.loads(orjson.dumps(responder(record))))
    return out
