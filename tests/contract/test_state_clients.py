"""The state-client contract against both adapters: gRPC to a real state
service on PostgreSQL, and in memory."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from psycopg_pool import AsyncConnectionPool

from coremachine.services.state.outbox import Outbox
from coremachine.services.state.servicer import StateServicer
from coremachine.services.state.store import StateStore
from coremachine.shared.grpc_channel import open_channel
from coremachine.shared.grpc_server import GrpcServer
from coremachine.shared.state_clients.grpc import GrpcStateClient
from coremachine.shared.state_clients.memory import InMemoryStateClient
from coremachine.state.v1 import state_pb2_grpc
from tests.contract.state_client_suite import StateClientContract


class TestInMemoryStateClient(StateClientContract):
    @pytest.fixture
    async def client(self) -> InMemoryStateClient:
        return InMemoryStateClient()


class TestGrpcStateClient(StateClientContract):
    @pytest.fixture
    async def client(self, db_url: str) -> AsyncIterator[GrpcStateClient]:
        pool = AsyncConnectionPool(
            db_url, min_size=1, max_size=8, open=False, kwargs={"autocommit": True}
        )
        await pool.open(wait=True)
        # Messages go straight into the PostgreSQL queue of the same database.
        store = StateStore(pool, Outbox("jobs", "tasks", direct=True))
        server = GrpcServer(0, host="127.0.0.1")
        server.add(
            state_pb2_grpc.add_StateServiceServicer_to_server,
            StateServicer(store, admin=None),  # type: ignore[arg-type]  (no admin RPCs here)
            "coremachine.state.v1.StateService",
        )
        port = await server.start()
        client = GrpcStateClient(open_channel(f"127.0.0.1:{port}"))
        yield client
        await client.close()
        await server.stop(0)
        await pool.close()
