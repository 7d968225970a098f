"""Run the adapter as an HTTP service (FastAPI on uvicorn) that hospital integration engines poll: evaluate a
patient now, a results feed with a cursor, population screen jobs, health and Prometheus metrics.

  fhir-adapter serve [--host H] [--port P] [--fhir URL] [--config FILE] [--workers N] [--database URL]
                     [--ssl-certfile PEM --ssl-keyfile PEM] [--allow-insecure-http] [--log-format text|json]

Settings come from FHIR_ADAPTER_* environment variables and the settings file (--config or
$FHIR_ADAPTER_CONFIG, TOML or JSON); these options override both. Every endpoint but /health needs an API key
(setting api_keys); with none configured the service starts and refuses every other request. It listens on
127.0.0.1 unless told otherwise: on any other address it warns, and without TLS (--ssl-certfile) it refuses to
start, since API keys would cross the network in clear, unless --allow-insecure-http (a TLS-terminating proxy
in front). See README 'Service'.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

# option -> the setting (environment variable FHIR_ADAPTER_<NAME>) it overrides
_OVERRIDES = {"host": "HOST", "port": "PORT", "fhir": "FHIR_BASE", "workers": "WORKERS", "database": "DATABASE_URL",
              "ssl_certfile": "SSL_CERTFILE", "ssl_keyfile": "SSL_KEYFILE", "log_format": "LOG_FORMAT"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1: loopback only)")
    parser.add_argument("--port", type=int, help="port (default 8090)")
    parser.add_argument("--fhir", metavar="URL", help="base URL of the FHIR R4 server to read (setting fhir_base)")
    parser.add_argument("--config", type=Path, metavar="FILE",
                        help="settings file, TOML or JSON (default: $FHIR_ADAPTER_CONFIG)")
    parser.add_argument("--workers", type=int, help="uvicorn worker processes (default 1)")
    parser.add_argument("--database", metavar="URL",
                        help="state database, an SQLAlchemy URL (default: state.db in the user's data directory, "
                             "e.g. ~/.local/share/fhir-adapter)")
    parser.add_argument("--ssl-certfile", type=Path, metavar="PEM", help="serve HTTPS with this certificate")
    parser.add_argument("--ssl-keyfile", type=Path, metavar="PEM", help="the certificate's private key")
    parser.add_argument("--allow-insecure-http", action="store_true", default=None,
                        help="accept API keys over plain HTTP on an address beyond loopback (only behind a "
                             "TLS-terminating proxy)")
    parser.add_argument("--log-format", choices=["text", "json"],
                        help="json: one JSON object per line, for the app's and uvicorn's logs (default text)")


def run(args: argparse.Namespace) -> int:
    # every worker process builds its app from the environment: pass the options on through it
    if args.config:
        os.environ["FHIR_ADAPTER_CONFIG"] = str(Path(args.config).resolve())
    for option, name in _OVERRIDES.items():
        value = getattr(args, option)
        if value is not None:
            os.environ[f"FHIR_ADAPTER_{name}"] = str(Path(value).resolve()) if isinstance(value, Path) else str(value)
    if args.allow_insecure_http:
        os.environ["FHIR_ADAPTER_ALLOW_INSECURE_HTTP"] = "true"

    from fhir_adapter.service.settings import ServiceSettings

    settings = ServiceSettings.load()  # fails here, once, with a message naming the setting
    from fhir_adapter.terminology.catalog import Catalog

    Catalog.load(settings.site)  # so does a site file that is not valid (not at the first request)
    import uvicorn

    from fhir_adapter.service import logs

    tls = settings.ssl_certfile is not None
    if not loopback(settings.host):
        if not tls and not settings.allow_insecure_http:
            print(f"fhir-adapter: refusing to listen on {settings.host} over plain HTTP: API keys would cross the "
                  "network in clear. Give --ssl-certfile and --ssl-keyfile, or --allow-insecure-http when a "
                  "TLS-terminating proxy is in front.", file=sys.stderr)
            return 2
        print(f"fhir-adapter: warning: listening on {settings.host}, beyond loopback: reachable from other "
              f"machines{'' if tls else ' over plain HTTP (--allow-insecure-http)'}", file=sys.stderr)
    scheme = "https" if tls else "http"
    print(f"fhir-adapter: serving on {scheme}://{settings.host}:{settings.port} "
          f"({settings.workers} worker{'s' if settings.workers > 1 else ''}; FHIR server: "
          f"{settings.fhir_base or 'none configured'}; {len(settings.api_keys)} API keys; state: "
          f"{_shown(settings.database_url)})", file=sys.stderr)
    uvicorn.run("fhir_adapter.service.app:app_from_environment", factory=True, host=settings.host,
                port=settings.port, workers=settings.workers, log_level=settings.log_level,
                log_config=logs.uvicorn_config(settings.log_level, settings.log_format),
                ssl_certfile=str(settings.ssl_certfile) if tls else None,
                ssl_keyfile=str(settings.ssl_keyfile) if tls else None,
                proxy_headers=False, server_header=False)
    return 0


def _shown(url: str) -> str:
    """A database URL without its password."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def loopback(host: str) -> bool:
    """Whether ``host`` (an address or a name) is a loopback one: only this machine can connect."""
    import ipaddress

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
