"""The service's settings: environment variables (``FHIR_ADAPTER_*``) over a settings file over defaults.

The settings file (TOML or JSON, by its suffix) is named by ``--config`` or ``FHIR_ADAPTER_CONFIG``. Every
setting is documented in the README ("Service"). Secrets (API keys, the FHIR token) are ``SecretStr``: they
never appear in a repr or a log line. API keys may be given as their sha256 (``key_sha256``) so the settings
file holds no usable credential.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from contextvars import ContextVar
from datetime import date
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from fhir_adapter.errors import ConfigError
from fhir_adapter.service.cds_hooks.settings import CdsHooksSettings
from fhir_adapter.service.changes import WATCHED_TYPES

SCOPES = ("results:read", "jobs:run", "writeback", "metrics:read")
Scope = Literal["results:read", "jobs:run", "writeback", "metrics:read"]
Kind = Literal["screening", "response"]
CONFIG_ENV = "FHIR_ADAPTER_CONFIG"

_config_file: ContextVar[Path | None] = ContextVar("fhir_adapter_service_config", default=None)


class ApiKey(BaseModel):
    """One client of the service (an integration engine, a job runner, Prometheus) and what it may do."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._@-]+$",
                      description="who this is, as written to the audit log")
    key: SecretStr | None = Field(None, description="the key itself (prefer key_sha256 in files)")
    key_sha256: str | None = Field(None, description="hex sha256 of the key: `printf %s KEY | sha256sum`")
    scopes: list[Scope] = Field(default_factory=lambda: ["results:read"])

    @field_validator("key_sha256")
    @classmethod
    def _hex(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", v):
            raise ValueError("key_sha256 must be 64 hex digits (sha256 of the key)")
        return v.lower() if v else v

    @model_validator(mode="after")
    def _one_key(self) -> ApiKey:
        if (self.key is None) == (self.key_sha256 is None):
            raise ValueError(f"API key {self.name!r}: give exactly one of key and key_sha256")
        if self.key is not None and len(self.key.get_secret_value()) < 16:
            raise ValueError(f"API key {self.name!r}: a key needs at least 16 characters")
        return self


class ServiceSettings(BaseSettings):
    """Everything ``fhir-adapter serve`` can be told; see the README's "Service" section."""

    model_config = SettingsConfigDict(env_prefix="FHIR_ADAPTER_", extra="forbid", validate_default=True)

    # listening
    host: str = Field("127.0.0.1", description="address to listen on (loopback unless told otherwise)")
    ssl_certfile: Path | None = Field(None, description="TLS certificate (PEM) of serve: HTTPS")
    ssl_keyfile: Path | None = Field(None, description="the certificate's private key (PEM)")
    allow_insecure_http: bool = Field(False, description="accept API keys over plain HTTP on an address beyond "
                                      "loopback (only behind a TLS-terminating proxy)")
    port: int = Field(8090, ge=1, le=65535)
    workers: int = Field(1, ge=1, le=64, description="uvicorn worker processes")
    # the FHIR server
    fhir_base: str | None = Field(None, description="base URL of the hospital's FHIR R4 server")
    token: SecretStr | None = Field(None, description="static bearer token for the FHIR server")
    smart_client_id: str | None = None
    smart_key: Path | None = Field(None, description="PEM or JWK private key file for SMART Backend Services")
    smart_alg: Literal["RS384", "ES384"] = "RS384"
    smart_token_url: str | None = None
    smart_scope: str = "system/*.read"
    fhir_timeout_seconds: float = Field(30.0, gt=0, description="read timeout of one FHIR request")
    fhir_max_attempts: int = Field(3, ge=1, le=10, description="attempts per FHIR request (retries + 1)")
    site: Path | None = Field(None, description="site mappings JSON file (local codes, units)")
    # state
    database_url: str = Field(default_factory=lambda: default_database_url(), description="SQLAlchemy URL of the "
                              "state (feed, jobs, audit); default: state.db in the user's data directory")
    # who may call
    api_keys: list[ApiKey] = Field(default_factory=list)
    # evaluation
    write_back: bool = Field(False, description="allow write-back (also needs the caller's 'writeback' scope)")
    as_of: Literal["today"] | date = Field("today", description="screening date: 'today' or a fixed date")
    studies: list[str] = Field(default_factory=lambda: ["NCT07377058", "NCT04966884"])
    # the change poller
    poll_interval_seconds: float = Field(60.0, ge=0, description="0 turns the change poller off")
    poll_overlap_seconds: float = Field(300.0, ge=0, description="look back this far for clock skew")
    poll_types: list[str] = Field(default_factory=lambda: list(WATCHED_TYPES), description="resource types the "
                                  "poller watches (Patient and the types the record reads)")
    poll_kinds: list[Kind] = Field(default_factory=lambda: ["screening"])
    poll_start: Literal["now", "beginning"] = Field("now", description="a first poll (no cursor): from the "
                                                    "server's newest change, or re-read everything")
    poll_sort: bool = Field(True, description="the server sorts by _lastUpdated (false: read by offset)")
    # population screen jobs
    job_source_dirs: list[Path] = Field(default_factory=list, description="directories jobs may read NDJSON/Bundle "
                                        "files from (none: only the FHIR server and the sample)")
    job_workers: int = Field(1, ge=1, le=64, description="worker processes of one file-source job")
    max_jobs_per_key: int = Field(4, ge=1, le=10000, description="jobs one API key may have queued or running at "
                                  "once; one more is refused (429, Retry-After)")
    # CDS Hooks (the EHR's calls): its clients, their keys, the fhirServers it may read
    cds_hooks: CdsHooksSettings = Field(default_factory=CdsHooksSettings)
    # responses
    retry_after_seconds: int = Field(30, ge=1, description="Retry-After of a 503 (FHIR server unavailable) and a "
                                     "429 (too many jobs)")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = Field("text", description="json: one JSON object per line (the app's "
                                                "and uvicorn's logs alike)")

    @field_validator("fhir_base")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError("fhir_base must be an http:// or https:// URL")
        return v.rstrip("/") if v else v

    @field_validator("studies")
    @classmethod
    def _known_studies(cls, v: list[str]) -> list[str]:
        ids = []
        for name in v:
            sid = study_id(name)
            if sid is None:
                raise ValueError(f"unknown study {name!r}")
            ids.append(sid)
        if not ids:
            raise ValueError("at least one study")
        return list(dict.fromkeys(ids))

    @field_validator("poll_types")
    @classmethod
    def _watched(cls, v: list[str]) -> list[str]:
        unknown = [t for t in v if t not in WATCHED_TYPES]
        if unknown:
            raise ValueError(f"{', '.join(unknown)}: not a type the record reads ({', '.join(WATCHED_TYPES)})")
        return list(dict.fromkeys(v))

    @model_validator(mode="after")
    def _tls_pair(self) -> ServiceSettings:
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("ssl_certfile and ssl_keyfile go together")
        return self

    @field_validator("site", "smart_key", "ssl_certfile", "ssl_keyfile")
    @classmethod
    def _file(cls, v: Path | None) -> Path | None:
        if v is not None and not v.is_file():
            raise ValueError(f"no such file: {v}")
        return v

    @model_validator(mode="after")
    def _smart_key(self) -> ServiceSettings:
        if self.smart_client_id and not self.smart_key:
            raise ValueError("smart_client_id needs smart_key (the private key file)")
        return self

    @field_validator("api_keys")
    @classmethod
    def _unique_names(cls, v: list[ApiKey]) -> list[ApiKey]:
        names = [k.name for k in v]
        if len(names) != len(set(names)):
            raise ValueError("API key names must be unique (they name the caller in the audit log)")
        return v

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, _FileSource(settings_cls)

    @classmethod
    def load(cls, config: Path | str | None = None, **overrides: Any) -> ServiceSettings:
        """Settings from ``overrides`` (command-line options), the environment, then ``config`` (or the file
        ``FHIR_ADAPTER_CONFIG`` names). Raises ConfigError naming the file or variable and the field."""
        token = _config_file.set(Path(config) if config else None)
        try:
            return cls(**{k: v for k, v in overrides.items() if v is not None})
        except ConfigError:
            raise
        except ValueError as e:  # pydantic's ValidationError
            raise ConfigError(f"invalid service settings: {_describe(e)}") from None
        finally:
            _config_file.reset(token)

    def today(self) -> date:
        """The screening date now: the fixed ``as_of``, or today's date."""
        return date.today() if self.as_of == "today" else self.as_of


def default_database_url() -> str:
    """``state.db`` in the user's data directory (platformdirs: ``~/.local/share/fhir-adapter`` on Linux; made when
    missing), never the directory ``serve`` was started from."""
    from platformdirs import user_data_path

    return f"sqlite:///{user_data_path('fhir-adapter', appauthor=False, ensure_exists=True) / 'state.db'}"


def study_id(name: str) -> str | None:
    """The id of the study ``name`` names (its id or an alias, any case), or None: unknown, or a file path (a
    caller of the service never picks a file)."""
    from fhir_adapter.studies.definition import load_study, studies_dir

    if Path(name).suffix == ".json":
        return None
    try:
        study = load_study(name)
    except ConfigError:
        return None
    return study.id if Path(study.path).resolve().parent == studies_dir().resolve() else None


class _FileSource(PydanticBaseSettingsSource):
    """The settings file: TOML (``.toml``) or JSON (anything else that parses as JSON)."""

    def __init__(self, settings_cls: type[BaseSettings]):
        super().__init__(settings_cls)
        path = _config_file.get() or (Path(os.environ[CONFIG_ENV]) if os.environ.get(CONFIG_ENV) else None)
        self.data = read_settings_file(path) if path else {}

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self.data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self.data)


def read_settings_file(path: Path) -> dict[str, Any]:
    """The settings in ``path`` as a dict; ConfigError names the file and what is wrong."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"settings file {path}: cannot read: {e.strerror or e}") from None
    try:
        data = tomllib.loads(raw.decode()) if path.suffix.lower() == ".toml" else json.loads(raw)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as e:
        kind = "TOML" if path.suffix.lower() == ".toml" else "JSON"
        raise ConfigError(f"settings file {path}: not valid {kind}: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"settings file {path}: expected a table/object of settings")
    return data


def _describe(error: Any) -> str:
    """A pydantic ValidationError as one line per field, without the input values (they may be secrets)."""
    errors = getattr(error, "errors", None)
    if not callable(errors):
        return str(error)
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in errors())
