"""The CDS Hooks settings (``cds_hooks`` in the service settings; documented in the README, "CDS Hooks").

Who may call (``clients``: one per JWT issuer, with the JWK Set its signatures are checked against and the
service scopes it holds), the URL the EHR calls this service at (``base_url``: every JWT's ``aud`` is that URL
plus ``/cds-services`` or ``/cds-services/{id}``, CDS Hooks 2.0 "Trusting CDS Clients"), and the FHIR servers
named in a request's ``fhirServer`` that the service may read (``fhir_servers``: any other is never contacted).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# asymmetric algorithms only: CDS Hooks 2.0 forbids "none" and every symmetric (HMAC) algorithm
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
Scope = Literal["results:read", "jobs:run", "writeback", "metrics:read"]


def _http_url(v: str, name: str) -> str:
    if not v.startswith(("http://", "https://")):
        raise ValueError(f"{name} must be an http:// or https:// URL")
    return v.rstrip("/")


class CdsClient(BaseModel):
    """One CDS client (an EHR): its JWT issuer, its public keys, and what it may do here."""

    model_config = ConfigDict(extra="forbid")

    iss: str = Field(min_length=1, description="the JWT 'iss' of this client, exactly")
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._@-]+$",
                      description="who this is, as written to the audit log")
    jwks_file: Path | None = Field(None, description="its JWK Set (public keys), a JSON file")
    jwks_url: str | None = Field(None, description="its JWK Set at a URL (fetched, cached jwks_cache_seconds)")
    jku: list[str] = Field(default_factory=list, description="JWK Set URLs a JWT's 'jku' header may name "
                           "(empty: a JWT with 'jku' is refused)")
    scopes: list[Scope] = Field(default_factory=lambda: ["results:read"],
                                description="the service scopes it holds (a patient-view call needs results:read)")

    @field_validator("jwks_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        return _http_url(v, "jwks_url") if v else v

    @field_validator("jku")
    @classmethod
    def _urls(cls, v: list[str]) -> list[str]:
        return [_http_url(u, "jku") for u in v]

    @field_validator("jwks_file")
    @classmethod
    def _file(cls, v: Path | None) -> Path | None:
        if v is not None and not v.is_file():
            raise ValueError(f"no such file: {v}")
        return v

    @model_validator(mode="after")
    def _one_jwks(self) -> CdsClient:
        if self.jwks_file is None and self.jwks_url is None and not self.jku:
            raise ValueError(f"CDS client {self.name!r}: give its keys: jwks_file, jwks_url or jku URLs")
        if self.jwks_file is not None and self.jwks_url is not None:
            raise ValueError(f"CDS client {self.name!r}: give only one of jwks_file and jwks_url")
        return self


class CdsHooksSettings(BaseModel):
    """``GET /cds-services`` and ``POST /cds-services/{id}``: who may call them and what they may read."""

    model_config = ConfigDict(extra="forbid")

    base_url: str | None = Field(None, description="this service's URL as the EHR calls it (the JWT 'aud' is it "
                                 "+ /cds-services[/{id}]); unset: every CDS Hooks request is refused")
    clients: list[CdsClient] = Field(default_factory=list)
    fhir_servers: list[str] = Field(default_factory=list, description="base URLs a request's fhirServer may name "
                                    "for a full read of the patient (any other is never contacted)")
    cards: dict[str, Literal["screening", "response"]] = Field(
        default_factory=lambda: {"NCT07377058": "screening", "NCT04966884": "response"},
        description="the card each study gives: a pre-screening card, or a treatment-response (TIS) summary; a "
                    "configured study not named here gives none")
    algorithms: list[Literal[ALGORITHMS]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: list(ALGORITHMS), description="JWT signature algorithms accepted")
    max_token_seconds: int = Field(300, ge=10, le=3600, description="a JWT expiring later than this after now "
                                   "is refused (bounds how long its jti is remembered)")
    leeway_seconds: int = Field(30, ge=0, le=300, description="clock skew allowed on exp and iat")
    jwks_cache_seconds: int = Field(300, ge=0, description="how long a JWK Set fetched from a URL is kept")
    fhir_timeout_seconds: float = Field(10.0, gt=0, description="read timeout of one request to a fhirServer")

    @field_validator("base_url")
    @classmethod
    def _base(cls, v: str | None) -> str | None:
        return _http_url(v, "base_url") if v else v

    @field_validator("fhir_servers")
    @classmethod
    def _servers(cls, v: list[str]) -> list[str]:
        return [_http_url(u, "fhir_servers") for u in v]

    @field_validator("clients")
    @classmethod
    def _unique(cls, v: list[CdsClient]) -> list[CdsClient]:
        for attr in ("iss", "name"):
            values = [getattr(c, attr) for c in v]
            if len(values) != len(set(values)):
                raise ValueError(f"CDS clients: each {attr} once")
        return v
