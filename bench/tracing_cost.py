"""What tracing costs the whole stack: `make bench` runs the same job with it off and on.

Two fresh stacks back to back on the same server, the same two-stage no-op
job on each: one with no exporter configured (the default, tracing off), one
exporting every span over OTLP/HTTP to a receiver in this process that
counts and drops what it gets (standing in for a collector, so the
services pay for creating, batching, encoding and sending spans, not for a
collector's work). Reported as tasks/s for each and the relative cost.
`python -m bench.telemetry_overhead` isolates the per-task cost in process.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class DroppingOtlpReceiver:
    """Accepts OTLP/HTTP exports on a loopback port, counts bytes, keeps nothing."""

    def __init__(self) -> None:
        self.requests = 0
        self.bytes = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                size = int(self.headers.get("Content-Length", 0))
                self.rfile.read(size)
                with receiver._lock:
                    receiver.requests += 1
                    receiver.bytes += size
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:  # quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> DroppingOtlpReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def tracing_env(endpoint: str) -> dict[str, str]:
    """Every span sampled and exported over OTLP/HTTP, as a production setting would."""
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_TRACES_SAMPLER": "always_on",
    }


def tracing_cost(
    run_on_stack: Callable[[Mapping[str, str]], dict[str, Any]],
    n: int,
) -> dict[str, Any]:
    """Throughput at n with tracing off, then on; `run_on_stack(env)` runs one job on a fresh stack."""
    off = run_on_stack({})
    with DroppingOtlpReceiver() as receiver:
        on = run_on_stack(tracing_env(receiver.endpoint))
        exported = {"requests": receiver.requests, "bytes": receiver.bytes}
    return {
        "n": n,
        "tracing_off_tasks_per_s": off["tasks_per_s"],
        "tracing_on_tasks_per_s": on["tasks_per_s"],
        "cost_pct": round(100 * (1 - on["tasks_per_s"] / off["tasks_per_s"]), 1),
        "exported": exported,
    }
