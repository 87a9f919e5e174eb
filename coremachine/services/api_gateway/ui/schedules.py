"""The dashboard's schedules: the list, one schedule with its firings, and its actions.

Pause, resume and trigger-now are the JSON API's calls with its role
(submitter), each after a confirmation and with the session's CSRF token.
"""

from __future__ import annotations

import re

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from coremachine.services.api_gateway.auth import Role
from coremachine.services.api_gateway.convert import firing_to_json, schedule_to_json
from coremachine.services.api_gateway.ui.context import Dashboard, require
from coremachine.services.api_gateway.ui.routing import ui_route_class
from coremachine.shared.domain.schedules import SCHEDULE_NAME_PATTERN
from coremachine.shared.errors import InvalidArgument, NotFound

PAGE_SIZE = 50
FIRINGS = 50
ACTIONS = {
    "pause": "Pause",
    "resume": "Resume",
    "trigger": "Trigger now",
}
_NAME = re.compile(SCHEDULE_NAME_PATTERN)
_TOKEN = re.compile(r"^[\w.:=-]{0,200}$")


def _check_name(name: str) -> str:
    if not _NAME.match(name):
        raise InvalidArgument("name: not a schedule name", "name")
    return name


def _check_action(action: str) -> str:
    if action not in ACTIONS:
        raise NotFound(f"no action {action!r} (one of: {', '.join(ACTIONS)})")
    return action


def schedule_pages_router(ui: Dashboard) -> APIRouter:
    router = APIRouter(prefix="/ui", include_in_schema=False, route_class=ui_route_class(ui))
    backends = ui.http.backends

    @router.get("/schedules")
    async def schedules_page(request: Request) -> HTMLResponse:
        user = await ui.user(request)
        token = request.query_params.get("page_token", "")
        if not _TOKEN.match(token):
            raise InvalidArgument("page_token: not a page token", "page_token")
        response = await backends.list_schedules(PAGE_SIZE, token)
        return ui.render(
            request,
            "schedules.html",
            user,
            schedules=[schedule_to_json(s) for s in response.schedules],
            next_page_token=response.next_page_token,
        )

    @router.get("/schedules/{name}")
    async def schedule_page(request: Request, name: str) -> HTMLResponse:
        user = await ui.user(request)
        schedule = schedule_to_json(await backends.get_schedule(_check_name(name)))
        firings = [firing_to_json(f) for f in await backends.schedule_firings(name, FIRINGS)]
        done = request.query_params.get("done", "")
        notice = f"{ACTIONS[done]}: done." if done in ACTIONS else ""
        if done == "trigger":  # a trigger that submitted a job goes to the job's page
            notice = "Trigger now: no job was submitted; its firing below says why."
        return ui.render(
            request,
            "schedule.html",
            user,
            schedule=schedule,
            firings=firings,
            notice=notice,
        )

    @router.get("/schedules/{name}/{action}")
    async def confirm(request: Request, name: str, action: str) -> HTMLResponse:
        user = await ui.user(request)
        require(Role.SUBMITTER, user)
        schedule = schedule_to_json(await backends.get_schedule(_check_name(name)))
        return ui.render(
            request,
            "confirm_schedule.html",
            user,
            schedule=schedule,
            action=_check_action(action),
            label=ACTIONS[action],
        )

    @router.post("/schedules/{name}/{action}")
    async def act(request: Request, name: str, action: str) -> RedirectResponse:
        await ui.acting_user(request, Role.SUBMITTER)
        _check_name(name)
        _check_action(action)
        if action == "trigger":
            response = await backends.trigger_schedule(name)
            if response.HasField("job") and response.job.job_id:
                return RedirectResponse(f"/ui/jobs/{response.job.job_id}?done=submitted", 303)
            return RedirectResponse(f"/ui/schedules/{name}?done=trigger", 303)
        await backends.set_schedule_paused(name, action == "pause")
        return RedirectResponse(f"/ui/schedules/{name}?done={action}", 303)

    return router
