"""`python -m coremachine.services.orchestrator`."""

from __future__ import annotations

import asyncio

from coremachine.services.orchestrator.bootstrap import build
from coremachine.services.orchestrator.settings import OrchestratorSettings
from coremachine.shared.grpc_server import serve_until_signalled
from coremachine.shared.logging_setup import configure_logging


async def serve(settings: OrchestratorSettings) -> None:
    app = await build(settings)
    # Both restart in place when they fail (shared/background.py): the
    # consumer's messages wait in the queue meanwhile.
    await serve_until_signalled(
        app.server, background=[app.health.run, app.consumer.run], on_shutdown=app.close
    )


def main() -> None:
    settings = OrchestratorSettings()
    configure_logging("orchestrator", settings.log_level, settings.log_format)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
