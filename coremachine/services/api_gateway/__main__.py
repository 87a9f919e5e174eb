"""`coremachine-server gateway`: HTTP and the public gRPC API in one process (and `keygen`)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import secrets as secrets_module

from coremachine.services.api_gateway.auth import Role, hash_key
from coremachine.services.api_gateway.bootstrap import build
from coremachine.services.api_gateway.settings import GatewaySettings
from coremachine.shared.background import Background
from coremachine.shared.grpc_server import serve_until_signalled
from coremachine.shared.logging_setup import configure_logging

log = logging.getLogger(__name__)


async def serve(settings: GatewaySettings) -> None:
    app = await build(settings)
    await serve_until_signalled(
        app.server,
        # The HTTP server is bound to its port and is why this process exists:
        # if it stops, the process exits non-zero for its supervisor to restart.
        background=[app.health.run, Background(app.run_http, name="http", restart=False)],
        on_shutdown=app.close,
    )


def keygen(name: str, role: str) -> None:
    """Prints a new API key once, and the entry to add to the `api-keys` secret."""
    roles = [r.name.lower() for r in Role]
    if role not in roles:
        raise SystemExit(f"role must be one of {', '.join(roles)}")
    key = secrets_module.token_urlsafe(32)
    print(f"API key (shown once, give it to the client): {key}")
    print("Add to the JSON list in the `api-keys` secret (Key Vault, or API_KEYS locally):")
    print(json.dumps({"name": name, "role": role, "sha256": hash_key(key)}))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m coremachine.services.api_gateway")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="serve HTTP and gRPC (the default)")
    new_key = commands.add_parser("keygen", help="make an API key and its hashed secret entry")
    new_key.add_argument("--name", required=True)
    new_key.add_argument("--role", required=True, help="reader, submitter or admin")
    args = parser.parse_args()
    if args.command == "keygen":
        keygen(args.name, args.role)
        return
    settings = GatewaySettings()
    configure_logging("api_gateway", settings.log_level, settings.log_format)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
