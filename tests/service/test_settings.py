"""Service settings: defaults, the environment, a TOML or JSON settings file, and clear errors."""

from __future__ import annotations

import hashlib
from datetime import date
from pathlib import Path

import pytest

from fhir_adapter.errors import ConfigError
from fhir_adapter.service.settings import ServiceSettings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FHIR_ADAPTER_CONFIG", "FHIR_ADAPTER_TOKEN", "FHIR_ADAPTER_SITE", "FHIR_ADAPTER_FHIR_BASE",
                 "FHIR_ADAPTER_PORT", "FHIR_ADAPTER_API_KEYS", "FHIR_ADAPTER_SMART_CLIENT_ID"):
        monkeypatch.delenv(name, raising=False)


def test_defaults_listen_on_loopback_with_no_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    s = ServiceSettings.load()
    assert (s.host, s.port, s.workers, s.api_keys, s.write_back) == ("127.0.0.1", 8090, 1, [], False)
    # the state in the user's data directory (created with the store), never the current directory
    assert s.database_url == f"sqlite:///{tmp_path / 'data' / 'fhir-adapter' / 'state.db'}"
    from fhir_adapter.service.store import Store

    store = Store(s.database_url)
    store.create_all()
    store.close()
    assert (tmp_path / "data" / "fhir-adapter" / "state.db").is_file()
    assert not [p.name for p in tmp_path.iterdir() if p.name != "data"]
    assert s.studies == ["NCT07377058", "NCT04966884"] and s.poll_interval_seconds == 60
    assert s.today() == date.today()


def test_file_then_env_then_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    digest = hashlib.sha256(b"engine-secret-key-123").hexdigest()
    toml = tmp_path / "service.toml"
    toml.write_text(f'''
port = 9000
fhir_base = "http://127.0.0.1:8080/fhir/"
as_of = 2025-03-01
[[api_keys]]
name = "mirth"
key_sha256 = "{digest.upper()}"
scopes = ["results:read", "jobs:run"]
''')
    s = ServiceSettings.load(toml)
    assert (s.port, s.fhir_base, s.today()) == (9000, "http://127.0.0.1:8080/fhir", date(2025, 3, 1))
    assert s.api_keys[0].key_sha256 == digest and s.api_keys[0].scopes == ["results:read", "jobs:run"]
    monkeypatch.setenv("FHIR_ADAPTER_PORT", "9100")
    monkeypatch.setenv("FHIR_ADAPTER_TOKEN", "fhir-token")
    s = ServiceSettings.load(toml)
    assert s.port == 9100 and s.token.get_secret_value() == "fhir-token"
    assert "fhir-token" not in repr(s)
    assert ServiceSettings.load(toml, port=9200, host=None).port == 9200  # None: the option was not given


def test_json_file_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "service.json"
    f.write_text('{"api_keys": [{"name": "prom", "key": "0123456789abcdef-prom", "scopes": ["metrics:read"]}],'
                 ' "poll_interval_seconds": 0}')
    monkeypatch.setenv("FHIR_ADAPTER_CONFIG", str(f))
    s = ServiceSettings()
    assert s.poll_interval_seconds == 0
    assert s.api_keys[0].key.get_secret_value() == "0123456789abcdef-prom"
    assert "0123456789abcdef" not in repr(s)


def test_api_keys_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FHIR_ADAPTER_API_KEYS", '[{"name": "a", "key": "aaaaaaaaaaaaaaaaaaaa"}]')
    assert ServiceSettings.load().api_keys[0].scopes == ["results:read"]


@pytest.mark.parametrize(("content", "message"), [
    ('{"port": 0}', "port: Input should be greater than or equal to 1"),
    ('{"colour": "red"}', "colour: Extra inputs are not permitted"),
    ('{"api_keys": [{"name": "a", "key": "short"}]}', "at least 16 characters"),
    ('{"api_keys": [{"name": "a"}]}', "give exactly one of key and key_sha256"),
    ('{"api_keys": [{"name": "a", "key_sha256": "abc"}]}', "64 hex digits"),
    ('{"api_keys": [{"name": "a", "key_sha256": "' + "a" * 64 + '", "scopes": ["admin"]}]}', "api_keys.0.scopes.0"),
    ('{"api_keys": [{"name": "a", "key_sha256": "' + "a" * 64 + '"}, {"name": "a", "key_sha256": "' + "b" * 64
     + '"}]}', "names must be unique"),
    ('{"fhir_base": "ftp://x"}', "fhir_base"),
    ('{"studies": ["NCT00000000"]}', "studies: Value error, unknown study 'NCT00000000'"),
    ('{"studies": ["studies/NCT07377058.json"]}', "unknown study"),  # a file: never
    ('{"studies": []}', "at least one study"),
    ('{"poll_types": ["Observation", "Basic"]}', "poll_types: Value error, Basic: not a type the record reads"),
    ('{"site": "/no/such/site.json"}', "site: Value error, no such file"),
    ('{"smart_client_id": "adapter"}', "smart_client_id needs smart_key"),
    ('[1, 2]', "expected a table/object"),
    ('{"port": ', "not valid JSON"),
])
def test_bad_settings_name_the_field(tmp_path: Path, content: str, message: str) -> None:
    f = tmp_path / "s.json"
    f.write_text(content)
    with pytest.raises(ConfigError) as err:
        ServiceSettings.load(f)
    assert message in str(err.value)


def test_a_key_value_never_appears_in_an_error(tmp_path: Path) -> None:
    f = tmp_path / "s.json"
    f.write_text('{"api_keys": [{"name": "a b", "key": "very-secret-value-123456"}]}')
    with pytest.raises(ConfigError) as err:
        ServiceSettings.load(f)
    assert "api_keys.0.name" in str(err.value) and "very-secret" not in str(err.value)


def test_missing_or_bad_toml_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        ServiceSettings.load(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("port = = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        ServiceSettings.load(bad)


def test_studies_are_named_by_id_or_alias(tmp_path: Path) -> None:
    f = tmp_path / "s.json"
    f.write_text('{"studies": ["promis-mda5", "NCT07377058", "Tofacitinib"]}')
    assert ServiceSettings.load(f).studies == ["NCT07377058", "NCT04966884"]
