"""FastAPI dependencies every protected route declares: the role it needs, known query fields.

Auth is a dependency (not middleware) so OpenAPI documents the two ways to
send a key and which routes need one. FastAPI resolves dependencies before it
validates parameters, so a caller without a key learns nothing from 400s.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from coremachine.services.api_gateway.auth import Authenticator, Principal, Role, key_from
from coremachine.services.api_gateway.ui.session import COOKIE_NAME, SessionCodec
from coremachine.shared.errors import InvalidArgument

_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <API key>`")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="The API key itself")
# Query fields every route tolerates (none so far); anything else undeclared is refused.
_ALWAYS_ALLOWED: frozenset[str] = frozenset()


# Reads may also be authorised by the dashboard's session cookie (its pages'
# scripts read the job's status and events); writes never are, so a forged
# cross-site request cannot act with a signed-in user's key.
_COOKIE_METHODS = frozenset({"GET", "HEAD"})


def role_guard(
    authenticator: Authenticator, sessions: SessionCodec | None = None
) -> Callable[[Role], Callable[..., Awaitable[Principal]]]:
    """Returns `needs(role)`, a dependency factory bound to this authenticator."""

    def needs(role: Role) -> Callable[..., Awaitable[Principal]]:
        async def check(
            request: Request,
            bearer: HTTPAuthorizationCredentials | None = Depends(_bearer),
            api_key: str | None = Depends(_api_key),
        ) -> Principal:
            # HTTPBearer drops a non-Bearer Authorization; read the raw header so
            # that "Basic ..." is refused as a bad key rather than a missing one.
            authorization = request.headers.get("authorization")
            key = key_from(authorization, api_key) or authorization
            if key is None and sessions is not None and request.method in _COOKIE_METHODS:
                session = sessions.open(request.cookies.get(COOKIE_NAME))
                key = session.key if session else None
            principal = await authenticator.authenticate(key, role)
            request.state.principal = principal
            return principal

        return check

    return needs


async def reject_unknown_query(request: Request) -> None:
    """400 naming the first query field the route does not declare (a typo is not ignored)."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    allowed = _query_names(route.dependant) | _ALWAYS_ALLOWED
    for name in request.query_params:
        if name not in allowed:
            known = ", ".join(sorted(allowed)) or "none"
            raise InvalidArgument(f"{name}: unknown query field (known: {known})", name)


def _query_names(dependant: Dependant) -> frozenset[str]:
    """Query fields a route declares, its dependencies' included."""
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return frozenset(names)


def parse_since(since: str | None, now: dt.datetime | None = None) -> dt.datetime | None:
    """`since` as hours back ("24", "0.5") or an ISO timestamp (naive = UTC)."""
    if since is None or since == "":
        return None
    now = now or dt.datetime.now(dt.UTC)
    try:
        hours = float(since)
    except ValueError:
        hours = None
    if hours is not None:
        if not 0 < hours <= 24 * 366:
            raise InvalidArgument("since: hours must be > 0 and at most a year", "since")
        return now - dt.timedelta(hours=hours)
    try:
        moment = dt.datetime.fromisoformat(since.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidArgument(
            "since: expected hours (e.g. 24) or an ISO timestamp (e.g. 2026-01-31T12:00:00Z)",
            "since",
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def clamp_limit(limit: int, maximum: int) -> int:
    """Limits above the maximum are clamped, not refused: a client asking for more gets the most."""
    return max(1, min(limit, maximum))


QueryCheck: Any = Depends(reject_unknown_query)
