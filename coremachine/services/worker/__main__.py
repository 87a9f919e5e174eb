"""`coremachine-server worker` (or `python -m coremachine.services.worker`)."""

from __future__ import annotations

import asyncio
import logging

from coremachine.app import AppError
from coremachine.services.worker.bootstrap import build
from coremachine.services.worker.settings import WorkerSettings
from coremachine.shared.grpc_server import serve_until_signalled
from coremachine.shared.logging_setup import configure_logging

log = logging.getLogger(__name__)


async def serve(settings: WorkerSettings) -> None:
    app = await build(settings)
    log.info(
        "running task types",
        extra={
            "fields": {
                "apps": [a.name for a in app.registry.apps],
                "queues": settings.queue_names(),
                "task_types": sorted(app.registry.handlers()),
            }
        },
    )
    # A longer grace than the consumer's: in-flight tasks finish first.
    await serve_until_signalled(
        app.server,
        # All restart in place when they fail (shared/background.py): a
        # restarted consumer first releases what the failed run held.
        background=[app.health.run, app.consumer.run, app.presence.run],
        on_shutdown=app.close,
        grace=settings.shutdown_grace_seconds + 5,
    )


def main() -> None:
    settings = WorkerSettings()
    configure_logging("worker", settings.log_level, settings.log_format)
    try:
        asyncio.run(serve(settings))
    except AppError as exc:
        # A bad app: say which, once, and exit non-zero (no traceback to dig through).
        log.critical("cannot start: %s", exc)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
