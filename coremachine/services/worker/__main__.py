"""`python -m coremachine.services.worker`."""

from __future__ import annotations

import asyncio

from coremachine.services.worker.bootstrap import build
from coremachine.services.worker.settings import WorkerSettings
from coremachine.shared.grpc_server import serve_until_signalled
from coremachine.shared.logging_setup import configure_logging


async def serve(settings: WorkerSettings) -> None:
    app = await build(settings)
    # A longer grace than the consumer's: in-flight tasks finish first.
    await serve_until_signalled(
        app.server,
        # Both restart in place when they fail (shared/background.py): a
        # restarted consumer first releases what the failed run held.
        background=[app.health.run, app.consumer.run],
        on_shutdown=app.close,
        grace=settings.shutdown_grace_seconds + 5,
    )


def main() -> None:
    settings = WorkerSettings()
    configure_logging("worker", settings.log_level, settings.log_format)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
