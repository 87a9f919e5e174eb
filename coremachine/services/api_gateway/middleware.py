"""ASGI middleware around the whole HTTP app: request ids, body size, last-resort 500.

Pure ASGI rather than Starlette's BaseHTTPMiddleware so that event streams
are not buffered and so that even an unhandled error's 500 carries the
X-Request-ID header and the common error body.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from coremachine.services.api_gateway.errors import error_body

log = logging.getLogger(__name__)

# A caller's own request id is echoed only if it is short and plain, so it
# cannot smuggle anything into logs or headers.
_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class _TooLarge(Exception):
    pass


class RequestMiddleware:
    """Assigns X-Request-ID, refuses bodies over max_body_bytes (413), turns crashes into 500."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = self._request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = [(k, v) for k, v in message.get("headers", []) if k != b"x-request-id"]
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        received = 0

        async def limited_receive() -> Message:
            # Counts what actually arrives: Content-Length can be absent (chunked) or lie.
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise _TooLarge
            return message

        if self._declared_length(scope) > self.max_body_bytes:
            await self._send_error(send_with_id, 413, "PayloadTooLarge", request_id)
            return
        try:
            await self.app(scope, limited_receive, send_with_id)
        except _TooLarge:
            if not started:
                await self._send_error(send_with_id, 413, "PayloadTooLarge", request_id)
        except Exception:
            log.exception("unhandled error serving %s %s", scope.get("method"), scope.get("path"))
            if not started:
                await self._send_error(send_with_id, 500, "Internal", request_id)
            # Once a response has started there is nothing left to tell the client.

    def _request_id(self, scope: Scope) -> str:
        for key, value in scope.get("headers", []):
            if key == b"x-request-id":
                candidate = value.decode("latin-1")
                if _CLIENT_REQUEST_ID.match(candidate):
                    return candidate
        return uuid.uuid4().hex[:16]

    @staticmethod
    def _declared_length(scope: Scope) -> int:
        for key, value in scope.get("headers", []):
            if key == b"content-length":
                try:
                    return int(value)
                except ValueError:
                    return 0
        return 0

    async def _send_error(self, send: Send, status: int, error: str, request_id: str) -> None:
        messages = {
            413: f"request body exceeds {self.max_body_bytes} bytes",
            500: "internal error (see the gateway log)",
        }
        body = json.dumps(error_body(error, messages[status], request_id)).encode()
        headers: list[Any] = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
