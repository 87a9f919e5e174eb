"""A job's events as a stream: Server-Sent Events over HTTP and WatchJob over gRPC.

The state service keeps an append-only, gap-free event record per job, so a
stream is "ask for events after seq N" in a loop: resuming after a dropped
connection is the same call with the last seq seen. While nothing new has
happened it long-polls the state service (which answers the moment the job
gets a new event, or after `poll_seconds`); it ends when the state service
says the job is terminal and nothing follows.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from coremachine.common.v1 import common_pb2
from coremachine.services.api_gateway.backends import Backends
from coremachine.services.api_gateway.convert import event_to_json
from coremachine.shared.errors import CoreMachineError, Unavailable
from coremachine.state.v1 import state_pb2

# A comment line now and then keeps proxies from closing an idle stream.
KEEPALIVE_SECONDS = 15.0
_PAGE = 500


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """Marks the end of a job's events (the job is terminal)."""

    last_seq: int
    # The job as it ended, when the state service sent it with the last page.
    job: common_pb2.Job | None = None


async def job_events(
    backends: Backends,
    job_id: str,
    after_seq: int,
    poll_seconds: float,
    stopping: asyncio.Event,
    first: state_pb2.ListEventsResponse | None = None,
    job_level_only: bool = False,
    end_only: bool = False,
) -> AsyncIterator[common_pb2.JobEvent | StreamEnd | None]:
    """Yields events after after_seq, None while idle (once per poll), StreamEnd last.

    `first` is a response already fetched (so that an unknown job fails
    before an HTTP stream has started); without it the first call is already
    a long poll. When `stopping` is set (the gateway shuts down) the stream
    fails with Unavailable so the client resumes elsewhere, instead of
    holding the shutdown up.
    """
    response = first
    while True:
        if response is None:
            # Long poll: the state service answers at once if events are
            # there (a full page, or events committed meanwhile), else as soon
            # as the job has a new event (woken by its commit), or after
            # poll_seconds.
            call = asyncio.ensure_future(
                backends.list_events(
                    job_id,
                    after_seq,
                    _PAGE,
                    wait_seconds=poll_seconds,
                    job_level_only=job_level_only,
                    end_only=end_only,
                )
            )
            stop = asyncio.ensure_future(stopping.wait())
            try:
                await asyncio.wait({call, stop}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stop.cancel()
            if not call.done():
                call.cancel()
                with contextlib.suppress(asyncio.CancelledError, CoreMachineError):
                    await call
                raise Unavailable(f"the gateway is shutting down; resume after seq {after_seq}")
            response = call.result()
        for event in response.events:
            after_seq = event.seq
            yield event
        if response.complete:
            yield StreamEnd(after_seq, response.job if response.HasField("job") else None)
            return
        if stopping.is_set():
            raise Unavailable(f"the gateway is shutting down; resume after seq {after_seq}")
        if not response.events:
            yield None  # idle: a chance for a keepalive
        response = None


def sse_event(event: common_pb2.JobEvent) -> str:
    # json.dumps never emits a newline here, so `data:` is one line.
    return (
        f"id: {event.seq}\nevent: {event.event_type}\n"
        f"data: {json.dumps(event_to_json(event), separators=(',', ':'))}\n\n"
    )


def sse_end(end: StreamEnd) -> str:
    # No `id:` line: Last-Event-ID stays the last real event's seq.
    return f"event: end\ndata: {json.dumps({'last_seq': end.last_seq})}\n\n"


async def sse_stream(
    events: AsyncIterator[common_pb2.JobEvent | StreamEnd | None],
) -> AsyncIterator[str]:
    """Formats a job_events iterator as Server-Sent Events text."""
    last_write = time.monotonic()
    # The retry hint asks EventSource clients to reconnect quickly (with Last-Event-ID).
    yield "retry: 1000\n\n"
    try:
        async for item in events:
            if item is None:
                if time.monotonic() - last_write >= KEEPALIVE_SECONDS:
                    last_write = time.monotonic()
                    yield ": keepalive\n\n"
                continue
            last_write = time.monotonic()
            yield sse_end(item) if isinstance(item, StreamEnd) else sse_event(item)
    except CoreMachineError as exc:
        # The status line is long gone; say why in the stream, and the client
        # resumes from its Last-Event-ID.
        body = {"error": type(exc).__name__, "message": str(exc)}
        yield f"event: error\ndata: {json.dumps(body)}\n\n"
