"""`python -m coremachine.services.state [serve|migrate]`."""

from __future__ import annotations

import argparse
import asyncio
import logging

from coremachine.services.state.bootstrap import build, current_conninfo, open_credentials
from coremachine.services.state.schema import migrate_all
from coremachine.services.state.settings import StateSettings
from coremachine.shared.grpc_server import serve_until_signalled
from coremachine.shared.logging_setup import configure_logging

log = logging.getLogger("coremachine.services.state")


async def serve(settings: StateSettings) -> None:
    app = await build(settings)
    await serve_until_signalled(
        app.server,
        # All restart in place when they fail (shared/background.py): each
        # keeps its state in the database.
        background=[
            app.health.run,
            app.relay.run,
            app.janitor.run,
            app.feed.run,
            app.queue_gauges.run,
        ],
        on_shutdown=app.close,
    )


async def migrate(settings: StateSettings) -> None:
    credentials, secrets = open_credentials(settings)
    try:
        database_url = await current_conninfo(credentials)
        broker_url = settings.broker_database_url or database_url
        await migrate_all(database_url, broker_url if settings.broker == "postgres" else None)
    finally:
        await credentials.close()
        await secrets.close()
    log.info("migrations applied")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m coremachine.services.state")
    parser.add_argument("command", nargs="?", default="serve", choices=["serve", "migrate"])
    args = parser.parse_args()
    settings = StateSettings()  # type: ignore[call-arg]
    configure_logging("state", settings.log_level, settings.log_format)
    asyncio.run(serve(settings) if args.command == "serve" else migrate(settings))


if __name__ == "__main__":
    main()
