"""Command-line options of screen and response: --only, --format csv, --as-of defaulting to today, --token-file,
Group-level export with --since (against the real server), the table's 36-character ids, and --help that explains
every option and names every environment variable the package reads."""

from __future__ import annotations

import argparse
import csv
import io
import logging
import re
import uuid
from collections import Counter
from datetime import date
from pathlib import Path

import orjson
import pytest
import requests

from fhir_adapter.cli.main import build_parser, main
from fhir_adapter.client import FhirClient
from fhir_adapter.client.auth import TokenFile
from fhir_adapter.errors import ConfigError
from tests.fault_proxy import FaultProxy

PACKAGE = Path(__file__).resolve().parent.parent / "fhir_adapter"
SCREEN = ("screen", "--study", "NCT07377058", "--source", "sample", "--as-of", "2026-06-30")
RESPONSE = ("response", "--study", "NCT04966884", "--source", "sample")


def cli(capsysbinary: pytest.CaptureFixture[bytes], *args: str) -> tuple[int, bytes, str]:
    logger = logging.getLogger("fhir_adapter")
    saved = logger.handlers[:], logger.level, logger.propagate
    try:
        status = main(list(args))
    finally:
        logger.handlers[:], logger.level, logger.propagate = saved
    out, err = capsysbinary.readouterr()
    return status, out, err.decode()


def summary_counts(err: str) -> str:
    return next(line for line in err.splitlines() if " as of " in line or "TIS class:" in line)


# -- --only -------------------------------------------------------------------------------------------------------

def test_only_filters_the_lines_written_not_the_counts(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    status, out, err = cli(capsysbinary, *SCREEN)
    every = [orjson.loads(x) for x in out.splitlines()]
    status2, out2, err2 = cli(capsysbinary, *SCREEN, "--only", "candidate,potential-candidate")
    assert status == status2 == 0
    shown = [orjson.loads(x) for x in out2.splitlines()]
    assert shown == [x for x in every if x["status"] in ("candidate", "potential-candidate")]
    assert 0 < len(shown) < len(every)
    assert summary_counts(err) == summary_counts(err2)  # the summary counts every patient
    assert f"{len(shown)} result lines written" in err2


def test_only_on_response_takes_tis_classes(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    _, out, err = cli(capsysbinary, *RESPONSE)
    every = [orjson.loads(x) for x in out.splitlines()]
    _, out2, err2 = cli(capsysbinary, *RESPONSE, "--only", "major,unknown")
    shown = [orjson.loads(x) for x in out2.splitlines()]
    assert shown == [x for x in every if (x.get("category") or "unknown") in ("major", "unknown")]
    assert 0 < len(shown) < len(every) and summary_counts(err) == summary_counts(err2)
    with pytest.raises(SystemExit) as e:
        main([*SCREEN, "--only", "eligible"])  # not a status the adapter gives
    assert e.value.code == 2
    assert "not a status" in capsysbinary.readouterr().err.decode()


# -- --format csv -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("command", [SCREEN, RESPONSE, (*SCREEN[:2], "NCT04966884", *SCREEN[3:], "--all-criteria")])
def test_csv_is_the_reports_csv(tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes],
                                command: tuple[str, ...]) -> None:
    _, lines, _ = cli(capsysbinary, *command)
    (tmp_path / "lines.jsonl").write_bytes(lines)
    status, out, err = cli(capsysbinary, *command, "--format", "csv")
    assert status == 0, err
    assert cli(capsysbinary, "report", str(tmp_path / "lines.jsonl"), "--out", str(tmp_path / "r.csv"))[0] == 0
    assert out == (tmp_path / "r.csv").read_bytes()
    rows = list(csv.DictReader(io.StringIO(out.decode())))
    assert len(rows) == len(lines.splitlines()) and all(r["mrn"].startswith("SYN-") for r in rows)


def test_csv_with_no_row_still_has_its_header(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    status, out, _ = cli(capsysbinary, *SCREEN, "--patient", "decoy-ipf", "--only", "candidate", "--format", "csv")
    assert status == 0 and out.decode().splitlines() == [
        "patient,mrn,study,as_of,status,cohort,failing,unknown,for_person,passes_from"]


# -- --as-of ------------------------------------------------------------------------------------------------------

def test_as_of_defaults_to_today_and_the_summary_says_so(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    before = date.today().isoformat()
    status, out, err = cli(capsysbinary, "screen", "--study", "NCT07377058", "--source", "sample",
                           "--patient", "mda5-ild-02-local")
    after = date.today().isoformat()
    (line,) = map(orjson.loads, out.splitlines())
    assert status == 0 and line["as_of"] in (before, after)
    assert f"as of {line['as_of']} (today: no --as-of given)" in err


# -- the table ----------------------------------------------------------------------------------------------------

def test_the_table_fits_36_character_ids_and_shows_the_mrn(tmp_path: Path,
                                                           capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    pid = str(uuid.UUID(int=7))  # 36 characters, as many servers give ids
    (tmp_path / "Patient.ndjson").write_bytes(orjson.dumps({
        "resourceType": "Patient", "id": pid, "birthDate": "1980-01-01", "gender": "female",
        "identifier": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                             "code": "MR"}]}, "value": "MR0042"}]}) + b"\n")
    for command in (("screen", "--study", "NCT07377058", "--as-of", "2026-06-30"), ("response", "--study",
                                                                                    "NCT04966884", "--patient", pid)):
        status, out, err = cli(capsysbinary, *command, "--source", str(tmp_path), "--format", "table")
        assert status == 0, err
        header, row = out.decode().splitlines()[:2]
        assert row.startswith(f"{pid} MR0042 "), row  # the id is whole, one space before the MRN
        assert header.index("mrn") == row.index("MR0042") == 37


# -- --token-file -------------------------------------------------------------------------------------------------

def test_token_file_is_read_again_when_it_changes(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "token"
    path.write_text("first-token\n")
    path.chmod(0o600)
    auth = TokenFile(path)

    def sent() -> str:
        return auth(requests.Request("GET", "http://x/").prepare()).headers["Authorization"]

    assert sent() == "Bearer first-token"
    path.write_text("second-token-longer")
    assert sent() == "Bearer second-token-longer"
    path.write_text("")  # being rewritten: the token read last stands
    assert sent() == "Bearer second-token-longer"
    for bad in ("", "two words"):
        path.write_text(bad)
        with pytest.raises(ConfigError, match=str(path)):
            TokenFile(path)
    with pytest.raises(ConfigError, match="cannot read"):
        TokenFile(tmp_path / "missing")
    path.write_text("t")
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="fhir_adapter"):
        TokenFile(path)
    assert "can be read by other users" in caplog.text


class RecordingProxy(FaultProxy):
    """A proxy that remembers the Authorization header of every request."""

    seen: list[str | None]

    def forward(self, method: str, path: str, headers: dict[str, str], body: bytes) -> requests.Response:
        self.seen.append(next((v for k, v in headers.items() if k.lower() == "authorization"), None))
        return super().forward(method, path, headers, body)


@pytest.mark.server
def test_token_file_reaches_the_server(fhir_base: str, tag: str, tmp_path: Path,
                                       capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    with FhirClient(fhir_base) as client:
        client.update({"resourceType": "Patient", "id": f"{tag}-t", "gender": "male"})
    token = tmp_path / "token"
    token.write_text(f"tok-{tag}\n")
    token.chmod(0o600)
    proxy = RecordingProxy(fhir_base)
    proxy.seen = []
    with proxy.running():
        status, _, err = cli(capsysbinary, "records", "--source", proxy.base, "--patient", f"{tag}-t",
                               "--token", "not-this-one", "--token-file", str(token))
    assert status == 0, err
    assert proxy.seen and set(proxy.seen) == {f"Bearer tok-{tag}"}


# -- Group-level export and --since, on the real server -----------------------------------------------------------

@pytest.mark.server
def test_group_export_reads_only_the_members(fhir_base: str, tag: str,
                                             capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    mr = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]}
    with FhirClient(fhir_base) as client:
        for n in ("a", "b", "outsider"):
            client.update({"resourceType": "Patient", "id": f"{tag}-{n}", "gender": "female",
                           "identifier": [{"type": mr, "system": "urn:oid:1.2.3", "value": f"MR-{tag}-{n}"}]})
        client.update({"resourceType": "Group", "id": f"{tag}-g", "type": "person", "actual": True,
                       "member": [{"entity": {"reference": f"Patient/{tag}-{n}"}} for n in ("a", "b")]})
    status, out, err = cli(capsysbinary, "screen", "--study", "NCT07377058", "--as-of", "2026-06-30",
                           "--source", fhir_base, "--export-group", f"{tag}-g")
    assert status == 0, err
    lines = [orjson.loads(x) for x in out.splitlines()]
    assert sorted((x["patient"], x["mrn"]) for x in lines) == [(f"Patient/{tag}-{n}", f"MR-{tag}-{n}")
                                                               for n in ("a", "b")]
    status, out, err = cli(capsysbinary, "records", "--source", fhir_base, "--export-group", f"{tag}-g",
                           "--since", "2999-01-01T00:00:00Z")  # nothing changed since then
    assert status == 0 and out == b"", err
    status, out, err = cli(capsysbinary, "records", "--source", fhir_base, "--export-group", f"{tag}-g",
                           "--since", "2000-01-01T00:00:00+08:00")
    assert status == 0 and len(out.splitlines()) == 2, err


def test_since_needs_an_export_and_a_time_zone(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    status, _, err = cli(capsysbinary, "records", "--source", "http://127.0.0.1:9/fhir", "--since",
                         "2026-01-01T00:00:00Z")
    assert status == 1 and "add --export or --export-group" in err
    with pytest.raises(SystemExit):
        main(["records", "--source", "sample", "--export-group", "g", "--since", "2026-01-01"])
    assert "time zone" in capsysbinary.readouterr().err.decode()


# -- --help -------------------------------------------------------------------------------------------------------

def _subparsers(parser: argparse.ArgumentParser, path: str = "") -> list[tuple[str, argparse.ArgumentParser]]:
    found = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _subparsers(sub, f"{path} {name}".strip())
    return found


def test_help_explains_every_option_without_markup() -> None:
    for path, parser in _subparsers(build_parser()):
        for action in parser._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"fhir-adapter {path} {action.option_strings[0]}: no help"
        text = parser.format_help()
        assert "``" not in text and not re.search(r"\bissue \d", text), f"fhir-adapter {path} --help"


def test_help_names_every_environment_variable_the_package_reads() -> None:
    read: set[str] = set()
    for f in PACKAGE.rglob("*.py"):
        source = f.read_text(encoding="utf-8")
        if "environ" in source or "getenv" in source:
            read |= set(re.findall(r'"((?:FHIR_ADAPTER|XDG|PROMETHEUS)_[A-Z_]+)"', source))
    read -= {"FHIR_ADAPTER_"}
    assert {"FHIR_ADAPTER_TOKEN", "FHIR_ADAPTER_SITE", "FHIR_ADAPTER_MAX_LINE_BYTES"} <= read
    helps = "\n".join(p.format_help() for _, p in _subparsers(build_parser()))
    missing = sorted(v for v in read if v not in helps)
    assert not missing, f"not named in any --help: {missing}"


def test_format_names_are_the_same_on_every_command() -> None:
    names: Counter[str] = Counter()
    for _, parser in _subparsers(build_parser()):
        for action in parser._actions:
            if "--format" in action.option_strings:
                names.update(action.choices or ())
    assert set(names) <= {"jsonl", "json", "table", "csv", "md", "html"}
    assert names["csv"] >= 3 and names["table"] >= 3  # screen, response, report / screen, response, mappings
