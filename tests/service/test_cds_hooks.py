"""CDS Hooks 2.0: discovery, ``patient-view`` cards, prefetch versus full read, and the client's JWT.

The requests follow the specification's examples ("Calling a CDS Service", "Trusting CDS Clients"), adapted to the
built-in sample's patients. The CDS client is a key pair generated here; its public JWK Set is a file the
service's settings name. A full read goes to the real FHIR server with the sample loaded.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient

from fhir_adapter.record.resource_types import rules

BASE = "https://cds.hospital.example/fhir-adapter"
ISS = "https://ehr.hospital.example/"
SERVICE = "anti-mda5-dm-trials"
HOOK_INSTANCE = "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea"  # the specification's example


def _jwk(key: ec.EllipticCurvePrivateKey, kid: str) -> dict[str, Any]:
    public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    return {**public, "kid": kid, "use": "sig", "alg": "ES384"}


@pytest.fixture(scope="module")
def keys() -> dict[str, ec.EllipticCurvePrivateKey]:
    return {"client": ec.generate_private_key(ec.SECP384R1()), "other": ec.generate_private_key(ec.SECP384R1())}


class _Recorder(http.server.BaseHTTPRequestHandler):
    """A local HTTP server that counts requests and serves ``body`` (a JWK Set, or nothing useful)."""

    hits: list[str]
    body: bytes = b"{}"

    def do_GET(self) -> None:
        type(self).hits.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(type(self).body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[tuple[str, type[_Recorder]]]:
    handler = type("Handler", (_Recorder,), {"hits": [], "body": b"{}"})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()


@pytest.fixture
def cds_settings(tmp_path: Path, keys: dict[str, Any]) -> Callable[..., dict[str, Any]]:
    """``cds_settings(**overrides)``: the ``cds_hooks`` settings with the test client (its JWK Set in a file)."""
    jwks = tmp_path / "ehr-jwks.json"
    jwks.write_text(json.dumps({"keys": [_jwk(keys["client"], "ehr-key-1")]}))

    def make(**overrides: Any) -> dict[str, Any]:
        client = {"iss": ISS, "name": "ehr", "jwks_file": str(jwks), **overrides.pop("client", {})}
        return {"base_url": BASE, "clients": [client], **overrides}

    return make


def token(key: Any, *, aud: str = f"{BASE}/cds-services/{SERVICE}", iss: str = ISS, exp: float | None = None,
          iat: float | None = None, jti: str | None = None, kid: str = "ehr-key-1", **header: Any) -> str:
    now = time.time()
    claims = {"iss": iss, "aud": aud, "exp": int(exp if exp is not None else now + 120),
              "iat": int(iat if iat is not None else now), "jti": jti or str(uuid.uuid4()),
              "tenant": "2ddd6c3a-8e9a-44c6-a305-52111ad302a2"}
    return jwt.encode(claims, key, algorithm=header.pop("alg", "ES384"),
                      headers={"kid": kid, "typ": "JWT", **header})


def bearer(t: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {t}"}


@pytest.fixture(scope="module")
def sample_resources() -> dict[str, list[dict[str, Any]]]:
    from fhir_adapter.sample.load import read_resources, sample_files

    return {p.stem: list(read_resources(p)) for p in sample_files()}


def prefetch_for(sample: dict[str, list[dict[str, Any]]], pid: str, *, drop: Callable[[dict[str, Any]], bool]
                 = lambda r: False, leave_out: tuple[str, ...] = ()) -> dict[str, Any]:
    """What an EHR would prefetch for ``pid`` from the sample: the Patient and one searchset Bundle per type (the
    referenced Medications included); ``drop`` cuts resources out, ``leave_out`` keys are not sent."""
    patient = next(r for r in sample["Patient"] if r["id"] == pid)
    out: dict[str, Any] = {"patient": patient}
    meds = {m["id"]: m for m in sample.get("Medication", [])}
    for rtype in rules().clinical:
        if rtype in leave_out:
            continue
        mine = [r for r in sample.get(rtype, []) if (r.get("subject") or r.get("patient") or {}).get("reference")
                == f"Patient/{pid}" and not drop(r)]
        entries = [{"resource": r, "search": {"mode": "match"}} for r in mine]
        for r in mine:
            ref = (r.get("medicationReference") or {}).get("reference", "")
            if ref.startswith("Medication/") and ref[11:] in meds:
                entries.append({"resource": meds[ref[11:]], "search": {"mode": "include"}})
        out[rtype] = {"resourceType": "Bundle", "type": "searchset", "total": len(mine), "entry": entries} \
            if entries else None
    return out


def hook_request(pid: str, prefetch: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    """The specification's example request ("Calling a CDS Service") for sample patient ``pid``."""
    body: dict[str, Any] = {"hookInstance": HOOK_INSTANCE, "hook": "patient-view",
                            "context": {"userId": "Practitioner/example", "patientId": pid, "encounterId": "89284"}}
    if prefetch is not None:
        body["prefetch"] = prefetch
    body.update(fields)
    return body


def fhir_authorization() -> dict[str, Any]:
    return {"access_token": "some-opaque-fhir-access-token", "token_type": "Bearer", "expires_in": 300,
            "scope": "user/Patient.read user/Observation.read", "subject": "cds-service4"}


@pytest.fixture
def cds(make_settings: Callable[..., Any], cds_settings: Callable[..., dict[str, Any]]) -> Callable[..., TestClient]:
    """``cds(fhir_base=None, **cds_overrides)``: a running app with CDS Hooks configured."""
    clients: list[TestClient] = []

    def make(fhir_base: str | None = None, **overrides: Any) -> TestClient:
        from fhir_adapter.service.app import create_app

        settings = make_settings(fhir_base=fhir_base, as_of="2026-06-30", cds_hooks=cds_settings(**overrides))
        client = TestClient(create_app(settings))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.__exit__(None, None, None)


def call(client: TestClient, key: Any, body: dict[str, Any], service: str = SERVICE) -> Any:
    return client.post(f"/cds-services/{service}", json=body,
                       headers=bearer(token(key, aud=f"{BASE}/cds-services/{service}")))


# -- discovery ---------------------------------------------------------------------------------------------------

def test_discovery_lists_the_patient_view_service_with_prefetch_templates(cds, keys) -> None:
    r = cds().get("/cds-services", headers=bearer(token(keys["client"], aud=f"{BASE}/cds-services")))
    assert r.status_code == 200, r.text
    (service,) = r.json()["services"]
    assert service["hook"] == "patient-view" and service["id"] == SERVICE and service["description"]
    prefetch = service["prefetch"]
    assert prefetch["patient"] == "Patient/{{context.patientId}}"
    # the entry criteria's types first, then every other type the screen reads
    assert list(prefetch)[1:3] == ["Condition", "Observation"]
    assert set(prefetch) - {"patient"} == set(rules().clinical)
    assert prefetch["MedicationStatement"] == ("MedicationStatement?patient={{context.patientId}}"
                                              "&_include=MedicationStatement:medication")


# -- cards ----------------------------------------------------------------------------------------------------

def test_full_read_of_an_allow_listed_fhir_server_gives_a_candidate_card(cds, keys, sample_loaded,
                                                                         sample_resources) -> None:
    client = cds(fhir_servers=[sample_loaded])
    body = hook_request("mda5-ild-01", {"patient": prefetch_for(sample_resources, "mda5-ild-01")["patient"]},
                        fhirServer=sample_loaded, fhirAuthorization=fhir_authorization())
    r = call(client, keys["client"], body)
    assert r.status_code == 200, r.text
    (card,) = r.json()["cards"]
    assert card["summary"].startswith("Possible PROMIS-MDA5 (NCT07377058) trial candidate: every criterion")
    assert card["indicator"] == "info" and card["source"]["label"] and "links" not in card
    assert "**candidate**" in card["detail"]
    assert "full record on the FHIR server" in card["detail"]
    assert "- I1 (age 18 to < 65 and body weight >= 45 kg): age 35" in card["detail"].replace("\\", "")
    assert "Missing" not in card["detail"]
    # no identifying data beyond what the chart shows: no name, no birth date
    assert "Synthetic" not in json.dumps(card) and "birth" not in json.dumps(card).lower()


def test_the_configured_fhir_server_is_read_whole_with_the_services_credentials(cds, keys, sample_loaded) -> None:
    client = cds(fhir_base=sample_loaded)  # not on the allow-list: it is the service's own server
    r = call(client, keys["client"], hook_request("mda5-ild-01", fhirServer=sample_loaded))
    (card,) = r.json()["cards"]
    assert "every criterion the record decides passes" in card["summary"]


def test_prefetch_alone_concludes_no_absence(cds, keys, sample_resources) -> None:
    """The same candidate from its (complete-looking) prefetch: every absence-based criterion is unknown."""
    r = call(cds(), keys["client"], hook_request("mda5-ild-01", prefetch_for(sample_resources, "mda5-ild-01")))
    (card,) = r.json()["cards"]
    assert "trial candidate: nothing fails" in card["summary"]
    detail = card["detail"].replace("\\", "")
    assert "**potential-candidate**" in detail
    missing = detail.split("**Missing (unknown)**")[1].split("**Met**")[0]
    for cid in ("E1 ", "E13 ", "E14 "):  # "no X among the records" criteria
        assert f"- {cid}" in missing
    assert "not a complete record" in detail and "fhirServer" in detail
    assert "- I1 (" in detail.split("**Met**")[1]  # what the prefetch shows is still met


def test_a_truncated_prefetch_does_not_hide_an_exclusion(cds, keys, sample_resources) -> None:
    """excl-e13-ivig had IVIG 16 days before screening: a prefetch that left the administrations out must not
    make them a candidate; the card says E13 is unknown and that the key was not sent."""
    pre = prefetch_for(sample_resources, "excl-e13-ivig", leave_out=("MedicationAdministration",))
    r = call(cds(), keys["client"], hook_request("excl-e13-ivig", pre))
    (card,) = r.json()["cards"]
    detail = card["detail"].replace("\\", "")
    assert "candidate" in card["summary"] and "every criterion" not in card["summary"]
    assert "- E13 (" in detail.split("**Missing (unknown)**")[1]
    assert "prefetch MedicationAdministration was not sent" in detail


def test_an_exclusion_that_ends_is_shown_with_its_date(cds, keys, sample_loaded) -> None:
    client = cds(fhir_servers=[sample_loaded])
    r = call(client, keys["client"], hook_request("excl-e13-ivig", fhirServer=sample_loaded))
    (card,) = r.json()["cards"]
    assert card["summary"] == ("PROMIS-MDA5 (NCT07377058): excluded until 2026-07-14; a possible trial candidate "
                               "from then")
    assert "**Exclusions that end**\n- E13: " in card["detail"]
    assert "passes from **2026-07-14**" in card["detail"]


@pytest.mark.parametrize("pid", ["incl-i2-mda5neg", "decoy-dm-mda5neg-noild"])
def test_no_card_for_a_patient_out_of_the_entry_cohort(cds, keys, sample_resources, pid) -> None:
    r = call(cds(), keys["client"], hook_request(pid, prefetch_for(sample_resources, pid)))
    assert r.status_code == 200 and r.json() == {"cards": []}


@pytest.mark.parametrize("pid", ["decoy-ipf", "excl-e3a-wbc"])
def test_no_card_for_out_of_cohort_or_ineligible_on_a_full_read(cds, keys, sample_loaded, pid) -> None:
    client = cds(fhir_servers=[sample_loaded])
    r = call(client, keys["client"], hook_request(pid, fhirServer=sample_loaded))
    assert r.status_code == 200 and r.json() == {"cards": []}


def test_tis_summary_for_a_tofacitinib_patient(cds, keys, sample_loaded) -> None:
    client = cds(fhir_servers=[sample_loaded])
    r = call(client, keys["client"], hook_request("tofa-responder-major", fhirServer=sample_loaded))
    cards = {c["source"]["topic"]["code"]: c for c in r.json()["cards"]}
    card = cards["NCT04966884"]
    assert card["summary"] == "NCT04966884 tofacitinib: TIS 87.5, major response at 2026-04-07"
    assert "| Physician global activity | 7.0 cm | 1.0 cm | 60 | 20 / 20 |" in card["detail"]
    assert "baseline 2025-04-07" in card["detail"]


def test_a_fhir_server_not_on_the_allow_list_is_never_contacted(cds, keys, sample_resources, recorder) -> None:
    url, handler = recorder
    pre = prefetch_for(sample_resources, "mda5-ild-01")
    r = call(cds(), keys["client"], hook_request("mda5-ild-01", pre, fhirServer=url,
                                                 fhirAuthorization=fhir_authorization()))
    assert r.status_code == 200
    assert handler.hits == []
    (card,) = r.json()["cards"]
    assert "not on this service's allow-list" in card["detail"] and "potential-candidate" in card["detail"]


def test_no_patient_and_no_server_is_412(cds, keys) -> None:
    r = call(cds(), keys["client"], hook_request("mda5-ild-01", {"Condition": None}))
    assert r.status_code == 412 and r.json()["resourceType"] == "OperationOutcome"


def test_an_unknown_service_and_a_wrong_hook(cds, keys, sample_resources) -> None:
    client = cds()
    assert call(client, keys["client"], hook_request("mda5-ild-01"), service="nope").status_code == 404
    bad = hook_request("mda5-ild-01", hook="order-sign")
    r = call(client, keys["client"], bad)
    assert r.status_code == 422 and r.json()["issue"][0]["expression"] == ["hook"]


def test_a_client_without_results_read_is_refused(cds, keys) -> None:
    r = call(cds(client={"scopes": ["metrics:read"]}), keys["client"], hook_request("mda5-ild-01"))
    assert r.status_code == 403


# -- the client's JWT ------------------------------------------------------------------------------------------

def _bad_tokens(keys: dict[str, Any]) -> dict[str, Callable[[], str | None]]:
    k = keys["client"]
    return {
        "no token": lambda: None,
        "bad signature": lambda: token(keys["other"]),
        "wrong aud": lambda: token(k, aud=f"{BASE}/cds-services/other-service"),
        "discovery aud": lambda: token(k, aud=f"{BASE}/cds-services"),
        "expired": lambda: token(k, exp=time.time() - 3600, iat=time.time() - 3700),
        "lives too long": lambda: token(k, exp=time.time() + 86400),
        "unknown iss": lambda: token(k, iss="https://other-ehr.example/"),
        "jku not allowed": lambda: token(k, jku="https://attacker.example/jwks.json"),
        "unknown kid": lambda: token(k, kid="nope"),
        "symmetric alg": lambda: jwt.encode({"iss": ISS, "aud": f"{BASE}/cds-services/{SERVICE}",
                                             "exp": int(time.time()) + 60, "iat": int(time.time()), "jti": "x"},
                                            "a-shared-secret-of-32-bytes-long!!", algorithm="HS256",
                                            headers={"kid": "ehr-key-1"}),
        "not a JWT": lambda: "not-a-jwt",
    }


@pytest.mark.parametrize("case", list(_bad_tokens({"client": None, "other": None})))
def test_every_jwt_failure_is_401(cds, keys, sample_resources, case) -> None:
    client = cds()
    t = _bad_tokens(keys)[case]()
    headers = bearer(t) if t else {}
    body = hook_request("mda5-ild-01", prefetch_for(sample_resources, "mda5-ild-01"))
    r = client.post(f"/cds-services/{SERVICE}", json=body, headers=headers)
    assert r.status_code == 401, (case, r.text)
    outcome = r.json()
    assert outcome["resourceType"] == "OperationOutcome" and outcome["issue"][0]["code"] == "login"
    assert r.headers["www-authenticate"].startswith("Bearer")
    if t is None:
        d = client.get("/cds-services")
        assert d.status_code == 401


def test_a_replayed_jti_is_401(cds, keys, sample_resources) -> None:
    client = cds()
    t = token(keys["client"], aud=f"{BASE}/cds-services")
    assert client.get("/cds-services", headers=bearer(t)).status_code == 200
    again = client.get("/cds-services", headers=bearer(t))
    assert again.status_code == 401 and "replay" in again.json()["issue"][0]["diagnostics"]


def test_a_jku_on_the_allow_list_is_fetched_and_verifies(cds, keys, recorder) -> None:
    url, handler = recorder
    handler.body = json.dumps({"keys": [_jwk(keys["other"], "rotated")]}).encode()
    client = cds(client={"jku": [f"{url}/jwks.json"]})
    t = token(keys["other"], aud=f"{BASE}/cds-services", kid="rotated", jku=f"{url}/jwks.json")
    assert client.get("/cds-services", headers=bearer(t)).status_code == 200
    assert handler.hits == ["/jwks.json"]


def test_unconfigured_cds_hooks_refuses_everything(make_settings, keys) -> None:
    from fhir_adapter.service.app import create_app

    with TestClient(create_app(make_settings())) as client:
        r = client.get("/cds-services", headers=bearer(token(keys["client"], aud=f"{BASE}/cds-services")))
    assert r.status_code == 401 and "not configured" in r.json()["issue"][0]["diagnostics"]



def test_from_a_prefetch_an_entry_criterion_without_evidence_gives_no_card(cds, keys, sample_resources) -> None:
    """decoy-ipf has no dermatomyositis: a prefetch cannot rule it out (I2 unknown), but nothing on the record
    points at the cohort, so no card; incl-i2-no-mda5-test has dermatomyositis without an anti-MDA5 test: a card
    that says I2 needs the test."""
    client = cds()
    r = call(client, keys["client"], hook_request("decoy-ipf", prefetch_for(sample_resources, "decoy-ipf")))
    assert r.json() == {"cards": []}
    pre = prefetch_for(sample_resources, "incl-i2-no-mda5-test")
    (card,) = call(client, keys["client"], hook_request("incl-i2-no-mda5-test", pre)).json()["cards"]
    missing = card["detail"].replace("\\", "").split("**Missing (unknown)**")[1]
    assert "- I2 (anti-MDA5 positive dermatomyositis): dermatomyositis coded but no anti-MDA5 result" in missing


def test_settings_from_a_toml_file(tmp_path: Path) -> None:
    from fhir_adapter.errors import ConfigError
    from fhir_adapter.service.settings import ServiceSettings

    jwks = tmp_path / "jwks.json"
    jwks.write_text('{"keys": []}')
    f = tmp_path / "s.toml"
    f.write_text(f'[cds_hooks]\nbase_url = "{BASE}/"\nfhir_servers = ["https://ehr.example/fhir/"]\n'
                 f'[[cds_hooks.clients]]\nname = "ehr"\niss = "{ISS}"\njwks_file = "{jwks}"\n')
    s = ServiceSettings.load(f).cds_hooks
    assert s.base_url == BASE and s.fhir_servers == ["https://ehr.example/fhir"] and s.clients[0].iss == ISS
    f.write_text(f'[[cds_hooks.clients]]\nname = "ehr"\niss = "{ISS}"\n')
    with pytest.raises(ConfigError, match=r"cds_hooks\.clients\.0: .*CDS client 'ehr': give its keys"):
        ServiceSettings.load(f)
