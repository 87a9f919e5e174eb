"""Infrastructure failures cross gRPC with the code a caller can act on."""

from __future__ import annotations

import grpc
import psycopg
import psycopg_pool
import pytest

from coremachine.shared.errors import NotFound, Overloaded, Unavailable
from coremachine.shared.grpc_errors import status_of


class FakeRpcError(grpc.aio.AioRpcError):
    def __init__(self, code: grpc.StatusCode) -> None:
        super().__init__(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details="upstream")


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (psycopg.errors.AdminShutdown("terminating connection"), grpc.StatusCode.UNAVAILABLE),
        (psycopg.OperationalError("server closed the connection"), grpc.StatusCode.UNAVAILABLE),
        (psycopg.errors.SerializationFailure("retry"), grpc.StatusCode.UNAVAILABLE),
        (psycopg.errors.TooManyConnections("too many clients"), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (psycopg_pool.PoolTimeout("no connection in 5 s"), grpc.StatusCode.UNAVAILABLE),
        (psycopg_pool.TooManyRequests("8 waiting"), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (psycopg_pool.PoolClosed("closed"), grpc.StatusCode.UNAVAILABLE),
        (ConnectionRefusedError("refused"), grpc.StatusCode.UNAVAILABLE),
        (Unavailable("down"), grpc.StatusCode.UNAVAILABLE),
        (Overloaded("busy"), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (NotFound("no job"), grpc.StatusCode.NOT_FOUND),
        # A dependency's answer is relayed, not turned into INTERNAL.
        (FakeRpcError(grpc.StatusCode.UNAVAILABLE), grpc.StatusCode.UNAVAILABLE),
        (FakeRpcError(grpc.StatusCode.RESOURCE_EXHAUSTED), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (FakeRpcError(grpc.StatusCode.INVALID_ARGUMENT), grpc.StatusCode.INVALID_ARGUMENT),
        (FakeRpcError(grpc.StatusCode.CANCELLED), grpc.StatusCode.UNAVAILABLE),
    ],
)
def test_failures_get_the_code_a_caller_can_act_on(exc, code):
    status = status_of(exc)
    assert status is not None and status[0] == code


@pytest.mark.parametrize(
    "exc",
    [RuntimeError("a bug"), KeyError("x"), FakeRpcError(grpc.StatusCode.INTERNAL)],
)
def test_bugs_stay_internal(exc):
    assert status_of(exc) is None
