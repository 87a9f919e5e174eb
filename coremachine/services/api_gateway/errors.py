"""The one mapping from errors to HTTP responses: `{"error", "message", "request_id"}`.

Domain errors (shared.errors) carry their meaning; gRPC failures of the
internal services that have no domain meaning become 502/504 so a client can
tell "your request was wrong" from "the service behind me failed". A
dependency that is down or saturated (UNAVAILABLE, RESOURCE_EXHAUSTED) is a
503 with `Retry-After`, never a 502: the request was fine and can be sent
again shortly.
"""

from __future__ import annotations

import logging
from typing import Any

import grpc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from coremachine.shared.errors import (
    Conflict,
    CoreMachineError,
    InvalidArgument,
    NotFound,
    Overloaded,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)

log = logging.getLogger(__name__)

STATUS_FOR: dict[type[CoreMachineError], int] = {
    InvalidArgument: 400,
    Unauthenticated: 401,
    PermissionDenied: 403,
    NotFound: 404,
    Conflict: 409,
    Unavailable: 503,
    Overloaded: 503,
}
# Seconds a client should wait before retrying a 503: about the time a
# PostgreSQL restart or a replica's restart takes.
RETRY_AFTER_SECONDS = 2
_HTTP_NAMES = {
    400: "InvalidArgument",
    401: "Unauthenticated",
    403: "PermissionDenied",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    413: "PayloadTooLarge",
    415: "UnsupportedMediaType",
}
_GRPC_TO_HTTP = {
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 503,
}


def error_body(error: str, message: str, request_id: str) -> dict[str, str]:
    return {"error": error, "message": message, "request_id": request_id}


def request_id_of(request: Request) -> str:
    return getattr(request.state, "request_id", "")


def error_response(
    status: int,
    error: str,
    message: str,
    request: Request,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    if status == 503:
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS), **(headers or {})}
    return JSONResponse(
        status_code=status,
        content=error_body(error, message, request_id_of(request)),
        headers=headers,
    )


def _field_of(loc: tuple[Any, ...]) -> str:
    """`("query", "limit")` -> "limit"; body paths keep their nesting."""
    parts = [str(p) for p in loc if p not in ("body", "path", "query", "header")]
    return ".".join(parts) or "request"


def install_error_handlers(app: FastAPI) -> None:
    """Registers the handlers; FastAPI's default 422 body never reaches a client."""

    @app.exception_handler(CoreMachineError)
    async def domain_error(request: Request, exc: CoreMachineError) -> JSONResponse:
        status = STATUS_FOR.get(type(exc), 500)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return error_response(status, type(exc).__name__, str(exc), request, headers)

    @app.exception_handler(grpc.aio.AioRpcError)
    async def backend_error(request: Request, exc: grpc.aio.AioRpcError) -> JSONResponse:
        # raise_for already turned every meaningful code into a domain error.
        log.error("internal service call failed: %s %s", exc.code().name, exc.details())
        status = _GRPC_TO_HTTP.get(exc.code(), 502)
        name = "Unavailable" if status == 503 else "BackendError"
        return error_response(status, name, f"internal service error: {exc.code().name}", request)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(
            exc.status_code,
            _HTTP_NAMES.get(exc.status_code, "HTTPError"),
            str(exc.detail),
            request,
            dict(exc.headers) if exc.headers else None,
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = [f"{_field_of(tuple(err['loc']))}: {err['msg']}" for err in exc.errors()]
        return error_response(400, "InvalidArgument", "; ".join(parts), request)
