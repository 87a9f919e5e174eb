"""The poison monitor survives any dead letter: whatever bytes a dead-lettered
body holds, operators can list, replay and fail it through the state service."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from coremachine.services.state.bootstrap import StateApp, build
from coremachine.services.state.settings import StateSettings
from coremachine.shared.broker import OutgoingMessage
from coremachine.shared.brokers.postgres import PostgresBroker
from coremachine.shared.grpc_channel import open_channel
from coremachine.state.v1 import state_pb2, state_pb2_grpc

# Bodies a consumer would dead-letter, each broken in its own way.
BODIES = {
    # JSON whose job_id decodes to a lone surrogate (UTF-8 cannot encode it).
    "surrogate": b'{"job_id": "\\ud800oops", "task_id": "\\udfff"}',
    "not-utf8": b"\xff\xfe\x00 not even text",
    "nested-ids": b'{"job_id": {"a": [1, 2]}, "task_id": 7}',
    "deep": b"[" * 100_000,
}


@pytest.fixture
async def state(db_url: str) -> AsyncIterator[tuple[StateApp, state_pb2_grpc.StateServiceStub]]:
    settings = StateSettings(DATABASE_URL=db_url, STATE_GRPC_PORT=0)  # type: ignore[call-arg]
    app = await build(settings)
    await app.server.start()
    channel = open_channel(f"127.0.0.1:{app.server.port}")
    yield app, state_pb2_grpc.StateServiceStub(channel)
    await channel.close()
    await app.server.stop(0)
    await app.close()


async def dead_letter_all(db_url: str, queue: str) -> None:
    broker = await PostgresBroker(db_url).open()
    try:
        await broker.send(queue, [OutgoingMessage(name, body) for name, body in BODIES.items()])
        received = []
        while len(received) < len(BODIES):
            received += await broker.receive(queue, 10, max_wait=5)
        for message in received:
            await broker.dead_letter(message, "UndecodableBody", "made by the test")
    finally:
        await broker.close()


async def test_dead_letters_with_undecodable_ids_are_listed_replayed_and_failed(state, db_url):
    _app, stub = state
    await dead_letter_all(db_url, "tasks")

    listed = await stub.ListDeadLetters(state_pb2.ListDeadLettersRequest(queue="tasks"))
    by_id = {m.message_id: m for m in listed.messages}
    assert set(by_id) == set(BODIES)
    # Shown as escapes, never dropped: the operator sees what was there.
    assert by_id["surrogate"].job_id == "\\ud800oops"
    assert by_id["surrogate"].task_id == "\\udfff"
    assert by_id["surrogate"].body == BODIES["surrogate"]
    assert by_id["not-utf8"].job_id == ""
    assert by_id["nested-ids"].job_id == "{'a': [1, 2]}"
    assert all(m.reason == "UndecodableBody" for m in listed.messages)

    replayed = await stub.ReplayDeadLetters(
        state_pb2.ReplayDeadLettersRequest(queue="tasks", sequences=[by_id["surrogate"].sequence])
    )
    assert replayed.replayed == 1

    rest = [m.sequence for name, m in by_id.items() if name != "surrogate"]
    failed = await stub.FailDeadLetters(
        state_pb2.FailDeadLettersRequest(queue="tasks", sequences=rest, reason="operator")
    )
    # None of them names a job of ours: nothing to fail, all purged.
    assert (failed.jobs_failed, failed.purged) == (0, len(rest))
    left = await stub.ListDeadLetters(state_pb2.ListDeadLettersRequest(queue="tasks"))
    assert list(left.messages) == []


async def test_an_unknown_queue_is_still_refused(state):
    _app, stub = state
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ListDeadLetters(state_pb2.ListDeadLettersRequest(queue="nope"))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
