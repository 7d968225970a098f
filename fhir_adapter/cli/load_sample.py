"""Load the built-in synthetic sample population into a FHIR server (idempotent: PUT by id)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

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


class _Counting:
    """The client, counting the resources of each transaction it sends (progress)."""

    def __init__(self, client: Any, progress: Any) -> None:
        self.client, self.progress = client, progress

    def transaction(self, bundle: dict[str, Any]) -> dict[str, Any]:
        answer = self.client.transaction(bundle)
        self.progress.advance(len(bundle["entry"]))
        return answer


def run(args: argparse.Namespace) -> int:
    from fhir_adapter.cli.progress import Progress
    from fhir_adapter.client import FhirClient
    from fhir_adapter.sample.load import load_sample, sample_files

    expected = sum(f.read_bytes().count(b"\n") for f in sample_files())
    with FhirClient(args.server, auth=server_auth(args)) as client, \
            Progress("load-sample", expected, unit="resources", quiet=args.quiet) as progress:
        counts = load_sample(_Counting(client, progress))
    total = sum(counts.values())
    if args.quiet:
        return 0
    print(f"loaded {total:,} sample resources into {args.server}: "
          + ", ".join(f"{t} {n:,}" for t, n in counts.items()), file=sys.stderr)
    return 0
