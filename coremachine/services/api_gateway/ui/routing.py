"""The dashboard's route class: its failures are HTML pages, never the API's JSON bodies."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import quote

from fastapi import Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute

from coremachine.services.api_gateway.errors import STATUS_FOR
from coremachine.services.api_gateway.ui.context import ActionRefused, Dashboard, SignInRequired
from coremachine.shared.errors import CoreMachineError

log = logging.getLogger(__name__)


def ui_route_class(dashboard: Dashboard) -> type[APIRoute]:
    class UiRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def handle(request: Request) -> Response:
                try:
                    return await handler(request)
                except SignInRequired:
                    if request.method == "GET":
                        target = request.url.path
                        if request.url.query:
                            target += "?" + request.url.query
                        return RedirectResponse(f"/ui/login?next={quote(target)}", 303)
                    return dashboard.refused(request, "sign in first")
                except ActionRefused as exc:
                    return dashboard.refused(request, str(exc))
                except CoreMachineError as exc:
                    return _error_page(dashboard, request, exc)

            return handle

    return UiRoute


def _error_page(dashboard: Dashboard, request: Request, exc: CoreMachineError) -> HTMLResponse:
    status = STATUS_FOR.get(type(exc), 502)
    values: dict[str, Any] = {"title": type(exc).__name__, "message": str(exc)}
    return dashboard.render(request, "error.html", None, status=status, **values)
