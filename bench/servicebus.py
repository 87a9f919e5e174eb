"""`python -m bench.servicebus`: the Service Bus adapter's publish and receive
paths on the SDK's real message classes, without a network.

Publish: task messages as the state service's outbox builds them (the body,
job and task ids, a traceparent) go through the adapter's `to_sdk_message`
and `pack` into `ServiceBusMessageBatch`es capped at each tier's batch limit
(256 KB Standard, 1 MB Premium); reported as messages/s of client CPU, send
calls (batches) per 1,000 messages and bytes per message on the wire.

Receive: the same messages as AMQP frames, as a receiver link hands them over
(encoded beforehand, not timed), decoded by the SDK
(`ServiceBusReceivedMessage.from_bytes`) and mapped by the adapter
(`to_received`); reported as messages/s.

What it leaves out is the network and the service: a send or receive call's
round trip, and the namespace's own limits (docs/azure-service-bus-capacity.md).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from azure.servicebus import ServiceBusMessage, ServiceBusMessageBatch, ServiceBusReceivedMessage

# No public encoder exists: these SDK internals turn a message into the AMQP
# bytes a receiver link would hand to `ServiceBusReceivedMessage.from_bytes`.
from azure.servicebus._pyamqp._encode import encode_payload
from azure.servicebus._transport._pyamqp_transport import PyamqpTransport
from azure.servicebus.amqp import AmqpMessageHeader

from coremachine.services.state.outbox import Outbox
from coremachine.shared.broker import OutgoingMessage, ReceivedMessage
from coremachine.shared.brokers.servicebus import to_received
from coremachine.shared.brokers.servicebus_batching import (
    PREMIUM_MAX_BATCH_BYTES,
    STANDARD_MAX_BATCH_BYTES,
    Packed,
    pack,
    to_sdk_message,
)
from coremachine.shared.domain.ids import task_id_for

ROOT = Path(__file__).resolve().parents[1]
TIERS = {"standard": STANDARD_MAX_BATCH_BYTES, "premium": PREMIUM_MAX_BATCH_BYTES}
# The worker's default receive batch (WORKER_RECEIVE_BATCH).
RECEIVE_BATCH = 128


def task_messages(count: int, job_id: str | None = None) -> list[OutgoingMessage]:
    """Stage 1's task messages of one job, built by the state service's outbox."""
    job_id = job_id or uuid.uuid4().hex + uuid.uuid4().hex  # 64 hex chars, as job ids are
    outbox = Outbox(jobs_queue="jobs", tasks_queue="tasks")
    trace = {"traceparent": f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"}
    return [
        outbox.task(task_id_for(job_id, 1, i), job_id, "noop", 1, trace=trace)[1]
        for i in range(count)
    ]


def batch_factory(limit: int) -> Callable[[], Awaitable[ServiceBusMessageBatch]]:
    async def new_batch() -> ServiceBusMessageBatch:
        # What sender.create_message_batch() returns on a link of that tier.
        return ServiceBusMessageBatch(max_size_in_bytes=limit)

    return new_batch


async def publish(messages: Sequence[OutgoingMessage], limit: int) -> list[Packed]:
    """The adapter's send path up to the network: SDK messages packed into batches."""
    return await pack(map(to_sdk_message, messages), batch_factory(limit))


def as_received(message: ServiceBusMessage, sequence: int) -> bytes:
    """The AMQP frame a peek-lock receiver link delivers for this message."""
    raw = message.raw_amqp_message
    raw.header = AmqpMessageHeader(delivery_count=0)
    now_ms = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
    raw.annotations = {
        b"x-opt-sequence-number": sequence,
        b"x-opt-enqueued-time": now_ms,
        b"x-opt-locked-until": now_ms + 600_000,
    }
    raw.delivery_annotations = {b"x-opt-lock-token": uuid.UUID(int=sequence)}
    payload = bytearray()
    encode_payload(payload, PyamqpTransport.to_outgoing_amqp_message(raw))
    return bytes(payload)


def receive(frames: Sequence[bytes]) -> list[ReceivedMessage]:
    """The receive path after the network: SDK decode, then the adapter's mapping."""
    return [to_received("tasks", ServiceBusReceivedMessage.from_bytes(f)) for f in frames]


def measure_publish(count: int, limit: int, rounds: int) -> dict:
    messages = task_messages(count)
    best = float("inf")
    packed: list[Packed] = []
    for _ in range(rounds):
        start = time.process_time()
        packed = asyncio.run(publish(messages, limit))
        best = min(best, time.process_time() - start)
    wire = sum(p.batch.size_in_bytes for p in packed)
    return {
        "max_batch_bytes": limit,
        "messages": count,
        "messages_per_s": round(count / best),
        "batches_per_1000_messages": round(len(packed) * 1000 / count, 2),
        "messages_per_batch": round(count / len(packed), 1),
        "wire_bytes_per_message": round(wire / count),
        "largest_batch_bytes": max(p.batch.size_in_bytes for p in packed),
    }


def measure_receive(count: int, rounds: int) -> dict:
    frames = [as_received(to_sdk_message(m), i + 1) for i, m in enumerate(task_messages(count))]
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        receive(frames)
        best = min(best, time.process_time() - start)
    return {
        "messages": count,
        "messages_per_s": round(count / best),
        "frame_bytes_per_message": round(sum(map(len, frames)) / count),
        "receive_calls_per_1000_messages": round(1000 / RECEIVE_BATCH, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.servicebus")
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3, help="best of, to damp a noisy machine")
    parser.add_argument("--output", default=str(ROOT / "bench" / "latest-servicebus.json"))
    args = parser.parse_args()
    results = {
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "publish": {
            tier: measure_publish(args.messages, limit, args.rounds)
            for tier, limit in TIERS.items()
        },
        "receive": measure_receive(args.messages, args.rounds),
    }
    print(json.dumps(results, indent=2))
    Path(args.output).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
