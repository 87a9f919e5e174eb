"""The dashboard's sign-in, sign-out and actions (POST forms, each after a confirmation).

An action is the same backend call the JSON API route makes, with the same
role: cancel and resubmit need submitter, dead letters need admin. Every POST
carries the session's CSRF token; a reader's POST is refused (403) exactly as
the API refuses the reader's key.
"""

from __future__ import annotations

import json
import re
import secrets
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from coremachine.services.api_gateway.auth import Role
from coremachine.services.api_gateway.convert import dead_letter_to_json, job_to_json
from coremachine.services.api_gateway.http_context import check_job_id
from coremachine.services.api_gateway.params import parse_parameters
from coremachine.services.api_gateway.ui.context import (
    LOGIN_CSRF_COOKIE,
    Dashboard,
    read_form,
    require,
)
from coremachine.services.api_gateway.ui.pages import job_type_info
from coremachine.services.api_gateway.ui.routing import ui_route_class
from coremachine.services.api_gateway.ui.views import FormError, form_fields, parameters_from_form
from coremachine.shared.errors import CoreMachineError, InvalidArgument, NotFound

_SEQUENCE = re.compile(r"^[0-9]{1,18}$")


def _local(target: str | None) -> str:
    """Where to go after sign-in: a dashboard path only (no open redirect)."""
    if not target:
        return "/ui/jobs"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/ui/") or "\\" in target:
        return "/ui/jobs"
    return target


def actions_router(ui: Dashboard) -> APIRouter:
    router = APIRouter(prefix="/ui", include_in_schema=False, route_class=ui_route_class(ui))
    backends = ui.http.backends

    # -- sign-in and sign-out ----------------------------------------------------------

    @router.get("/login")
    async def login_form(request: Request) -> HTMLResponse:
        return ui.login_page(request)

    @router.post("/login")
    async def login(request: Request) -> Response:
        form = await read_form(request)
        expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
        if not expected or not secrets.compare_digest(expected, form.get("csrf_token", "")):
            return ui.refused(request, "the sign-in form expired; reload the page and try again")
        key = form.get("api_key", "").strip()
        try:
            await ui.authenticator.authenticate(key or None, Role.READER)
        except CoreMachineError:
            return ui.login_page(request, "That API key is not valid.", status=401)
        return ui.signed_in_response(request, key, _local(form.get("next")))

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        await ui.acting_user(request, Role.READER)
        return ui.signed_out_response(request)

    # -- jobs: cancel and resubmit ----------------------------------------------------

    async def confirm_job(request: Request, job_id: str, action: str) -> HTMLResponse:
        user = await ui.user(request)
        require(Role.SUBMITTER, user)
        job = job_to_json(await backends.get_job(check_job_id(job_id)))
        return ui.render(request, "confirm_job.html", user, job=job, action=action)

    @router.get("/jobs/{job_id}/cancel")
    async def confirm_cancel(request: Request, job_id: str) -> HTMLResponse:
        return await confirm_job(request, job_id, "cancel")

    @router.get("/jobs/{job_id}/resubmit")
    async def confirm_resubmit(request: Request, job_id: str) -> HTMLResponse:
        return await confirm_job(request, job_id, "resubmit")

    @router.post("/jobs/{job_id}/cancel")
    async def cancel(request: Request, job_id: str) -> RedirectResponse:
        user, _ = await ui.acting_user(request, Role.SUBMITTER)
        await backends.cancel_job(
            check_job_id(job_id), f"cancelled in the dashboard by {user.principal.name}"
        )
        return RedirectResponse(f"/ui/jobs/{job_id}?done=cancelled", 303)

    @router.post("/jobs/{job_id}/resubmit")
    async def resubmit(request: Request, job_id: str) -> RedirectResponse:
        await ui.acting_user(request, Role.SUBMITTER)
        response = await backends.redrive_job(check_job_id(job_id))
        return RedirectResponse(
            f"/ui/jobs/{job_id}?done=resubmitted&requeued={response.tasks_requeued}", 303
        )

    # -- submit from the generated form -----------------------------------------------

    @router.post("/job-types/{job_type}/submit")
    async def submit(request: Request, job_type: str) -> Response:
        user, form = await ui.acting_user(request, Role.SUBMITTER)
        info = await job_type_info(ui, job_type)
        fields = form_fields(info["parameters_schema"])
        error = None
        try:
            if form.get("mode") == "json":
                parameters = parse_parameters(
                    form.get("parameters_json", "").encode(), ui.http.parameter_limits
                )
            else:
                parameters = parameters_from_form(fields, form)
                parse_parameters(json.dumps(parameters).encode(), ui.http.parameter_limits)
            response = await backends.submit(job_type, json.dumps(parameters).encode())
        except FormError as exc:
            error = str(exc)
        except (InvalidArgument, NotFound) as exc:
            error = str(exc)  # the orchestrator's validation message names the field
        if error is not None:
            return ui.render(
                request,
                "job_type.html",
                user,
                status=400,
                job_type=info,
                fields=fields,
                values=form,
                error=error,
            )
        return RedirectResponse(
            f"/ui/jobs/{response.job.job_id}?done={'submitted' if response.created else 'exists'}",
            303,
        )

    # -- dead letters: replay or mark failed (admin) -----------------------------------

    def check_letter(queue: str, sequence: str) -> None:
        if queue not in ui.queues:
            raise NotFound(f"no queue {queue!r}")
        if not _SEQUENCE.match(sequence):
            raise InvalidArgument("sequence: must be a dead letter's sequence number", "sequence")

    @router.get("/queues/{queue}/dead-letters/{sequence}/{action}")
    async def confirm_letter(
        request: Request, queue: str, sequence: str, action: str
    ) -> HTMLResponse:
        user = await ui.user(request)
        require(Role.ADMIN, user)
        check_letter(queue, sequence)
        if action not in ("replay", "fail"):
            raise NotFound(f"no action {action!r}")
        letters = await backends.dead_letters(queue, 1000)
        letter = next((m for m in letters if m.sequence == sequence), None)
        if letter is None:
            raise NotFound(f"no dead letter {sequence} in queue {queue!r} (replayed already?)")
        return ui.render(
            request,
            "confirm_letter.html",
            user,
            letter=dead_letter_to_json(letter),
            action=action,
        )

    @router.post("/queues/{queue}/dead-letters/{sequence}/replay")
    async def replay(request: Request, queue: str, sequence: str) -> RedirectResponse:
        await ui.acting_user(request, Role.ADMIN)
        check_letter(queue, sequence)
        replayed = await backends.replay_dead_letters(queue, [sequence])
        return RedirectResponse(f"/ui/queues?done=replayed&count={replayed}", 303)

    @router.post("/queues/{queue}/dead-letters/{sequence}/fail")
    async def fail(request: Request, queue: str, sequence: str) -> RedirectResponse:
        user, form = await ui.acting_user(request, Role.ADMIN)
        check_letter(queue, sequence)
        reason = form.get("reason", "")[:500] or f"failed by {user.principal.name} in the dashboard"
        response = await backends.fail_dead_letters(queue, [sequence], reason)
        return RedirectResponse(f"/ui/queues?done=failed&count={response.jobs_failed}", 303)

    return router
