"""Run the adapter as an HTTP service (FastAPI on uvicorn) that hospital integration engines poll: evaluate a
patient now, a results feed with a cursor, population screen jobs, health and Prometheus metrics.

  fhir-adapter serve [--host H] [--port P] [--fhir URL] [--config FILE] [--workers N]

Settings come from FHIR_ADAPTER_* environment variables and the settings file (--config or
$FHIR_ADAPTER_CONFIG, TOML or JSON); these options override both. Every endpoint but /health needs an API key
(setting api_keys); with none configured the service starts and refuses every other request. It listens on
127.0.0.1 unless told otherwise. See README 'Service'.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

# option -> the setting (environment variable FHIR_ADAPTER_<NAME>) it overrides
_OVERRIDES = {"host": "HOST", "port": "PORT", "fhir": "FHIR_BASE", "workers": "WORKERS", "database": "DATABASE_URL"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1: loopback only)")
    parser.add_argument("--port", type=int, help="port (default 8090)")
    parser.add_argument("--fhir", metavar="URL", help="base URL of the FHIR R4 server to read (setting fhir_base)")
    parser.add_argument("--config", type=Path, metavar="FILE",
                        help="settings file, TOML or JSON (default: $FHIR_ADAPTER_CONFIG)")
    parser.add_argument("--workers", type=int, help="uvicorn worker processes (default 1)")
    parser.add_argument("--database", metavar="URL",
                        help="state database, an SQLAlchemy URL (default sqlite:///fhir-adapter-state.db)")


def run(args: argparse.Namespace) -> int:
    # every worker process builds its app from the environment: pass the options on through it
    if args.config:
        os.environ["FHIR_ADAPTER_CONFIG"] = str(Path(args.config).resolve())
    for option, name in _OVERRIDES.items():
        value = getattr(args, option)
        if value is not None:
            os.environ[f"FHIR_ADAPTER_{name}"] = str(value)

    from fhir_adapter.service.settings import ServiceSettings

    settings = ServiceSettings.load()  # fails here, once, with a message naming the setting
    from fhir_adapter.terminology.catalog import Catalog

    Catalog.load(settings.site)  # so does a site file that is not valid (not at the first request)
    import uvicorn

    print(f"fhir-adapter: serving on http://{settings.host}:{settings.port} "
          f"({settings.workers} worker{'s' if settings.workers > 1 else ''}; FHIR server: "
          f"{settings.fhir_base or 'none configured'}; {len(settings.api_keys)} API keys)", file=sys.stderr)
    uvicorn.run("fhir_adapter.service.app:app_from_environment", factory=True, host=settings.host,
                port=settings.port, workers=settings.workers, log_level=settings.log_level,
                proxy_headers=False, server_header=False)
    return 0
