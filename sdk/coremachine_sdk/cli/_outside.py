"""The two commands that do not use the gRPC API: `poison` (HTTP) and `up` (local stack)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from coremachine_sdk._errors import (
    CoreMachineError,
    InvalidParameters,
    JobNotFound,
    PermissionDenied,
    Unauthorized,
    Unavailable,
)

_HTTP_ERRORS: dict[int, type[CoreMachineError]] = {
    400: InvalidParameters,
    401: Unauthorized,
    403: PermissionDenied,
    404: JobNotFound,
    503: Unavailable,
}


def fetch_poison(base_url: str, api_key: str | None, queue: str | None) -> Any:
    """The body of `GET /api/monitor/poison` (dead-lettered messages), as JSON."""
    query = f"?{urllib.parse.urlencode({'queue': queue})}" if queue else ""
    headers = {"Accept": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    request = urllib.request.Request(
        f"{base_url.rstrip('/')}/api/monitor/poison{query}", headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)
    except urllib.error.HTTPError as error:
        message = _error_message(error)
        raise _HTTP_ERRORS.get(error.code, CoreMachineError)(
            message, f"HTTP {error.code}"
        ) from None
    except (urllib.error.URLError, OSError) as error:
        raise Unavailable(f"cannot reach {base_url}: {error}") from None


def _error_message(error: urllib.error.HTTPError) -> str:
    # The gateway's error bodies are {"error", "message", "request_id"}.
    try:
        body = json.load(error)
        return str(body.get("message") or body)
    except (ValueError, AttributeError):
        return f"HTTP {error.code} {error.reason}"


def poison_messages(body: Any) -> list[dict[str, Any]] | None:
    """The dead letters in a poison response, or None when its shape is unknown.

    The gateway answers {"queues": {name: {"count", "messages": [...]}}}; a bare
    list or {"messages": [...]} is accepted too.
    """
    if isinstance(body, list):
        return body
    if not isinstance(body, dict):
        return None
    if isinstance(body.get("messages"), list):
        return body["messages"]
    queues = body.get("queues")
    if isinstance(queues, dict) and all(
        isinstance(q, dict) and isinstance(q.get("messages"), list) for q in queues.values()
    ):
        return [m for q in queues.values() for m in q["messages"]]
    return None


def find_repository(start: Path, configured: str | None) -> Path | None:
    """The CoreMachine checkout: COREMACHINE_REPO, else the first of `start` and its parents."""
    candidates = [Path(configured)] if configured else [start, *start.parents]
    for candidate in candidates:
        if (candidate / "coremachine" / "stack" / "__main__.py").is_file() and (
            candidate / "pyproject.toml"
        ).is_file():
            return candidate
    return None


def find_server(start: Path, configured_repository: str | None) -> list[str] | None:
    """The command that starts the local stack: the installed `coremachine-server`
    (next to this interpreter or on PATH), else the one of a checkout's .venv."""
    beside = Path(sys.executable).parent / "coremachine-server"
    installed = str(beside) if beside.exists() else shutil.which("coremachine-server")
    if installed and configured_repository is None:
        return [installed, "up"]
    repository = find_repository(start, configured_repository)
    if repository is None:
        return [installed, "up"] if installed else None
    in_venv = repository / ".venv" / "bin" / "coremachine-server"
    if in_venv.exists():
        return [str(in_venv), "up"]
    return [sys.executable, "-m", "coremachine.stack", "up"]


def run_stack(command: list[str]) -> int:
    """Runs the local stack in the foreground until it stops."""
    process = subprocess.Popen(command)
    while True:
        try:
            return process.wait()
        except KeyboardInterrupt:
            # Ctrl-C reached the stack too (same process group): let it stop cleanly.
            continue
