"""Load the built-in synthetic sample population into a FHIR server (idempotent: PUT by id)."""

from __future__ import annotations

import argparse
import sys

from fhir_adapter.cli.common import server_auth


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", required=True, metavar="URL", help="FHIR server base URL")
    parser.add_argument("--token", default=None, help="static bearer token")
    parser.add_argument("--token-file", metavar="FILE", default=None,
                        help="read the bearer token from FILE (wins over --token)")
    parser.add_argument("--smart-client-id", default=None, help="SMART Backend Services client id")
    parser.add_argument("--smart-key", default=None, metavar="FILE",
                        help="PEM or JWK file with the private key that signs the client assertion")
    parser.add_argument("--smart-alg", choices=["RS384", "ES384"], default="RS384",
                        help="the key's signing algorithm (default: RS384)")
    parser.add_argument("--smart-token-url", default=None,
                        help="token endpoint (default: from the server's .well-known/smart-configuration)")
    parser.add_argument("--smart-scope", default="system/*.write",
                        help="the scopes asked for (default: system/*.write)")


def run(args: argparse.Namespace) -> int:
    from fhir_adapter.client import FhirClient
    from fhir_adapter.sample.load import load_sample

    with FhirClient(args.server, auth=server_auth(args)) as client:
        counts = load_sample(client)
    total = sum(counts.values())
    print(f"loaded {total:,} sample resources into {args.server}: "
          + ", ".join(f"{t} {n:,}" for t, n in counts.items()), file=sys.stderr)
    return 0
