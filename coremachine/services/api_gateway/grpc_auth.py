"""Auth and error mapping for the public gRPC service's methods.

Each JobService method declares its role with `@requires(Role.X)`; a unit
test checks that every RPC of the proto has one, so a new RPC cannot ship
unguarded.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

import grpc

from coremachine.services.api_gateway.auth import Authenticator, Principal, Role, key_from
from coremachine.shared.grpc_errors import map_stream_errors as shared_map_stream_errors

log = logging.getLogger(__name__)

# grpc.aio runs each call in its own asyncio task, so this is per call.
_principal: contextvars.ContextVar[Principal] = contextvars.ContextVar("principal")


def current_principal() -> Principal:
    """The caller of the RPC being served (set by @requires)."""
    return _principal.get()


class _HasAuthenticator(Protocol):
    authenticator: Authenticator


async def authenticate(
    authenticator: Authenticator, context: grpc.aio.ServicerContext, role: Role
) -> Principal:
    """The caller of this call, from `authorization: Bearer <key>` or `x-api-key` metadata."""
    metadata = {k.lower(): v for k, v in (context.invocation_metadata() or ())}
    authorization = metadata.get("authorization")
    api_key = metadata.get("x-api-key")
    key = key_from(
        authorization if isinstance(authorization, str) else None,
        api_key if isinstance(api_key, str) else None,
    )
    principal = await authenticator.authenticate(key or authorization, role)
    _principal.set(principal)
    return principal


def requires(role: Role) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Checks the caller's role before the method runs (unary or server-streaming)."""

    def decorate(method: Callable[..., Any]) -> Callable[..., Any]:
        if inspect.isasyncgenfunction(method):

            @functools.wraps(method)
            async def stream(
                self: _HasAuthenticator, request: Any, context: grpc.aio.ServicerContext
            ) -> AsyncIterator[Any]:
                await authenticate(self.authenticator, context, role)
                async for item in method(self, request, context):
                    yield item

            stream.required_role = role  # type: ignore[attr-defined]
            return stream

        @functools.wraps(method)
        async def unary(
            self: _HasAuthenticator, request: Any, context: grpc.aio.ServicerContext
        ) -> Any:
            await authenticate(self.authenticator, context, role)
            return await method(self, request, context)

        unary.required_role = role  # type: ignore[attr-defined]
        return unary

    return decorate


def map_stream_errors(
    method: Callable[..., AsyncIterator[Any]],
) -> Callable[..., AsyncIterator[Any]]:
    """coremachine.shared.grpc_errors.map_stream_errors, keeping the role marker."""
    wrapper = shared_map_stream_errors(method)
    wrapper.required_role = getattr(method, "required_role", None)  # type: ignore[attr-defined]
    return wrapper
