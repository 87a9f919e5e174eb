"""What the dashboard's pages share: templates, sessions, the signed-in user, rendering."""

from __future__ import annotations

import datetime as dt
import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from coremachine.services.api_gateway.auth import Authenticator, Principal, Role
from coremachine.services.api_gateway.http_context import HttpContext
from coremachine.services.api_gateway.ui.session import (
    COOKIE_NAME,
    MAX_AGE_SECONDS,
    Session,
    SessionCodec,
    csrf_matches,
)
from coremachine.shared.errors import CoreMachineError, PermissionDenied

UI_DIR = Path(__file__).parent
LOGIN_CSRF_COOKIE = "cm_login_csrf"
# A form bigger than this is not one of ours.
_MAX_FORM_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class User:
    principal: Principal
    session: Session

    @property
    def can_submit(self) -> bool:
        return self.principal.role >= Role.SUBMITTER

    @property
    def is_admin(self) -> bool:
        return self.principal.role >= Role.ADMIN


class SignInRequired(Exception):
    """Raised by a page without a valid session: the user is sent to the sign-in page."""


class ActionRefused(Exception):
    """A POST without the session's CSRF token, or by a role too low: 403."""


def _age(value: str | None, now: dt.datetime | None = None) -> str:
    """An ISO timestamp as "12 s ago", or "in 3 h" when it is ahead (a schedule's next tick).

    The page also shows the timestamp itself (the element's title).
    """
    if not value:
        return ""
    moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    seconds = int(((now or dt.datetime.now(dt.UTC)) - moment).total_seconds())
    span = abs(seconds)
    if span < 120:
        amount = f"{span} s"
    elif span < 7200:
        amount = f"{span // 60} min"
    elif span < 172800:
        amount = f"{span // 3600} h"
    else:
        amount = f"{span // 86400} d"
    return f"in {amount}" if seconds < 0 else f"{amount} ago"


def _seconds(value: float | None) -> str:
    if value is None:
        return "—"
    if value < 120:
        return f"{value:.0f} s"
    if value < 7200:
        return f"{value / 60:.0f} min"
    return f"{value / 3600:.1f} h"


def _duration(start: str | None, end: str | None) -> str:
    if not start or not end:
        return ""
    a = dt.datetime.fromisoformat(start.replace("Z", "+00:00"))
    b = dt.datetime.fromisoformat(end.replace("Z", "+00:00"))
    return f"{(b - a).total_seconds():.2f} s"


@dataclass
class Dashboard:
    http: HttpContext
    authenticator: Authenticator
    sessions: SessionCodec
    queues: tuple[str, ...]
    # Secure cookies also over plain HTTP (behind a proxy that ends TLS and
    # does not say so with X-Forwarded-Proto).
    force_secure_cookies: bool = False

    def __post_init__(self) -> None:
        self.templates = Environment(
            loader=FileSystemLoader(UI_DIR / "templates"),
            autoescape=select_autoescape(["html"]),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.filters["age"] = _age
        self.templates.filters["seconds"] = _seconds
        self.templates.filters["tojson_pretty"] = lambda v: json.dumps(v, indent=2, default=str)
        self.templates.globals["duration"] = _duration
        self.templates.globals["query"] = lambda **kw: urlencode(
            {k: v for k, v in kw.items() if v not in (None, "")}
        )

    # -- sessions ------------------------------------------------------------------

    async def user(self, request: Request) -> User:
        """The signed-in user, authorised afresh with the session's key on every request."""
        session = self.sessions.open(request.cookies.get(COOKIE_NAME))
        if session is None:
            raise SignInRequired
        try:
            principal = await self.authenticator.authenticate(session.key, Role.READER)
        except CoreMachineError:
            raise SignInRequired from None  # the key was revoked meanwhile
        return User(principal, session)

    async def acting_user(self, request: Request, role: Role) -> tuple[User, dict[str, str]]:
        """The user of a POST, with its form: the CSRF token must match and the role suffice."""
        user = await self.user(request)
        form = await read_form(request)
        if not csrf_matches(user.session, form.get("csrf_token")):
            raise ActionRefused("the form's CSRF token is missing or wrong; reload the page")
        if user.principal.role < role:
            raise ActionRefused(
                f"this action needs the {role.name.lower()} role;"
                f" {user.principal.name!r} has {user.principal.role.name.lower()}"
            )
        return user, form

    def secure(self, request: Request) -> bool:
        proto = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
        return self.force_secure_cookies or request.url.scheme == "https" or proto == "https"

    def signed_in_response(self, request: Request, key: str, to: str) -> RedirectResponse:
        response = RedirectResponse(to, status_code=303)
        response.set_cookie(
            COOKIE_NAME,
            self.sessions.seal(self.sessions.new(key)),
            max_age=MAX_AGE_SECONDS,
            path="/",
            httponly=True,
            samesite="strict",
            secure=self.secure(request),
        )
        response.delete_cookie(LOGIN_CSRF_COOKIE, path="/ui")
        return response

    def signed_out_response(self, request: Request) -> RedirectResponse:
        response = RedirectResponse("/ui/login?signed_out=1", status_code=303)
        response.delete_cookie(
            COOKIE_NAME, path="/", httponly=True, samesite="strict", secure=self.secure(request)
        )
        return response

    def login_page(self, request: Request, error: str = "", status: int = 200) -> HTMLResponse:
        # Sign-in happens before any session exists: its CSRF token is a
        # double-submit cookie (SameSite=Strict keeps other sites from setting it).
        token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(32)
        response = self.render(
            request,
            "login.html",
            None,
            status=status,
            error=error,
            login_csrf=token,
            request_next=request.query_params.get("next", ""),
            signed_out="signed_out" in request.query_params,
        )
        response.set_cookie(
            LOGIN_CSRF_COOKIE,
            token,
            max_age=3600,
            path="/ui",
            httponly=True,
            samesite="strict",
            secure=self.secure(request),
        )
        return response

    # -- rendering -----------------------------------------------------------------

    def render(
        self,
        request: Request,
        template: str,
        user: User | None,
        *,
        status: int = 200,
        **values: Any,
    ) -> HTMLResponse:
        html = self.templates.get_template(template).render(
            user=user,
            csrf=user.session.csrf if user else "",
            path=request.url.path,
            **values,
        )
        return HTMLResponse(
            html,
            status_code=status,
            headers={
                # Only our own files: no CDN, no inline script (the page's data travels
                # in data- attributes), so injected markup cannot run. Inline styles only
                # size the progress bars.
                "Content-Security-Policy": (
                    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline';"
                    " img-src 'self' data:; frame-ancestors 'none'; form-action 'self'"
                ),
                "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "same-origin",
                "Cache-Control": "no-store",
            },
        )

    def refused(self, request: Request, message: str) -> HTMLResponse:
        return self.render(request, "error.html", None, status=403, title="Not allowed",
                           message=message)  # fmt: skip


async def read_form(request: Request) -> dict[str, str]:
    """An urlencoded form body as {name: last value} (no multipart: our forms never upload)."""
    body = await request.body()
    if len(body) > _MAX_FORM_BYTES:
        raise PermissionDenied("form too large")
    parsed = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    return {k: v[-1] for k, v in parsed.items()}


def require(role: Role, user: User) -> None:
    if user.principal.role < role:
        raise ActionRefused(f"this page needs the {role.name.lower()} role")
