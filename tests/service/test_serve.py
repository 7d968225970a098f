"""``fhir-adapter serve`` as a process: HTTPS with a certificate (a self-signed one made here), a warning beyond
loopback and a refusal of plain HTTP there unless ``--allow-insecure-http``, JSON logs (one object per line for
the app's and uvicorn's records), and the state database in the user's data directory."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.service.conftest import API_KEYS

CLI = [sys.executable, "-m", "fhir_adapter.cli.main", "serve"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _self_signed(folder: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def _env(tmp_path: Path) -> dict[str, str]:
    keys = [{"name": "reader", "key": API_KEYS["reader"][0], "scopes": ["results:read"]}]
    env = {k: v for k, v in os.environ.items() if not k.startswith("FHIR_ADAPTER_")}
    return {**env, "FHIR_ADAPTER_API_KEYS": json.dumps(keys), "FHIR_ADAPTER_POLL_INTERVAL_SECONDS": "0",
            "XDG_DATA_HOME": str(tmp_path / "data")}


@contextmanager
def _serve(tmp_path: Path, *args: str) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    """``serve`` with ``args`` until it listens (uvicorn's 'Uvicorn running on'), from
    ``tmp_path`` as the current directory; the process and the lines of its standard error so far."""
    proc = subprocess.Popen([*CLI, *args], cwd=tmp_path, env=_env(tmp_path), stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True)
    lines: list[str] = []
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if "Uvicorn running on" in line:  # bound (startup completes before the socket is listening)
                break
        else:
            pytest.fail("serve stopped before it started:\n" + "".join(lines))
        yield proc, lines
    finally:
        proc.terminate()
        try:
            rest = proc.communicate(timeout=30)[1]
        except subprocess.TimeoutExpired:
            proc.kill()
            rest = proc.communicate()[1]
        lines.extend(rest.splitlines(keepends=True))


def test_serve_https_with_a_certificate(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    port = _free_port()
    with _serve(tmp_path, "--port", str(port), "--ssl-certfile", str(cert), "--ssl-keyfile", str(key)) as (_, err):
        r = httpx.get(f"https://127.0.0.1:{port}/v1/feed", timeout=60, verify=str(cert),
                      headers={"Authorization": f"Bearer {API_KEYS['reader'][0]}"})
        assert r.status_code == 200 and r.json()["entries"] == []
        with pytest.raises(httpx.HTTPError):  # plain HTTP on the TLS port is not served
            httpx.get(f"http://127.0.0.1:{port}/health/live", timeout=60)
    assert any(f"serving on https://127.0.0.1:{port}" in line for line in err)
    # the state went to the user's data directory, nothing to the directory serve ran in
    assert (tmp_path / "data" / "fhir-adapter" / "state.db").is_file()
    assert not list(tmp_path.glob("*.db*"))


def test_plain_http_beyond_loopback_is_refused_unless_allowed(tmp_path: Path) -> None:
    refused = subprocess.run([*CLI, "--host", "0.0.0.0", "--port", str(_free_port())], cwd=tmp_path,
                             env=_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "refusing to listen on 0.0.0.0 over plain HTTP" in refused.stderr
    port = _free_port()
    with _serve(tmp_path, "--host", "0.0.0.0", "--port", str(port), "--allow-insecure-http") as (_, err):
        assert httpx.get(f"http://127.0.0.1:{port}/health/live", timeout=60).json() == {"status": "live"}
    assert any("warning: listening on 0.0.0.0, beyond loopback" in line for line in err)


def test_log_format_json_is_one_object_a_line_for_every_logger(tmp_path: Path) -> None:
    port = _free_port()
    with _serve(tmp_path, "--port", str(port), "--log-format", "json") as (_, err):
        httpx.get(f"http://127.0.0.1:{port}/v1/feed", timeout=60, headers={"X-API-Key": "not-a-key-0123456789"})
    logged = [line for line in err if not line.startswith("fhir-adapter: ")]  # the command's own lines
    records = [json.loads(line) for line in logged if line.strip()]
    assert len(records) == len([line for line in logged if line.strip()])
    assert {"time", "level", "logger", "message"} <= set(records[0])
    loggers = {r["logger"] for r in records}
    assert {"uvicorn.error", "uvicorn.access"} <= loggers, loggers
    assert any(r["logger"] == "uvicorn.access" and "/v1/feed" in r["message"] and "401" in r["message"]
               for r in records)
