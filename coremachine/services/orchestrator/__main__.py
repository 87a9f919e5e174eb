"""`coremachine-server orchestrator` (or `python -m coremachine.services.orchestrator`)."""

from __future__ import annotations

import asyncio
import logging

from coremachine.app import AppError
from coremachine.services.orchestrator.bootstrap import build
from coremachine.services.orchestrator.settings import OrchestratorSettings
from coremachine.shared.grpc_server import serve_until_signalled
from coremachine.shared.logging_setup import configure_logging

log = logging.getLogger(__name__)


async def serve(settings: OrchestratorSettings) -> None:
    app = await build(settings)
    log.info(
        "serving job types",
        extra={
            "fields": {
                "apps": [a.name for a in app.registry.apps],
                "job_types": {
                    jt.name: app.registry.fingerprint(jt.name)[:12]
                    for jt in app.registry.job_types()
                },
            }
        },
    )
    # All restart in place when they fail (shared/background.py): the
    # consumer's messages wait in the queue meanwhile.
    background = [app.health.run, app.registration.run, app.consumer.run]
    if app.scheduler is not None:
        background.append(app.scheduler.run)
    await serve_until_signalled(app.server, background=background, on_shutdown=app.close)


def main() -> None:
    settings = OrchestratorSettings()
    configure_logging("orchestrator", settings.log_level, settings.log_format)
    try:
        asyncio.run(serve(settings))
    except AppError as exc:
        # A bad app: say which, once, and exit non-zero (no traceback to dig through).
        log.critical("cannot start: %s", exc)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
