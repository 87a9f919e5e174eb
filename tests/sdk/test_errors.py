"""One mapping from gRPC status codes to the SDK's exceptions."""

from __future__ import annotations

import grpc
import pytest

from coremachine_sdk import (
    Conflict,
    CoreMachineError,
    InvalidParameters,
    JobNotFound,
    PermissionDenied,
    Timeout,
    Unauthorized,
    Unavailable,
)
from coremachine_sdk._errors import error_from_rpc


class FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str, trailing=()) -> None:
        self._code, self._details, self._trailing = code, details, trailing

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self):
        return self._trailing


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (grpc.StatusCode.NOT_FOUND, JobNotFound),
        (grpc.StatusCode.INVALID_ARGUMENT, InvalidParameters),
        (grpc.StatusCode.FAILED_PRECONDITION, Conflict),
        (grpc.StatusCode.UNAUTHENTICATED, Unauthorized),
        (grpc.StatusCode.PERMISSION_DENIED, PermissionDenied),
        (grpc.StatusCode.UNAVAILABLE, Unavailable),
        (grpc.StatusCode.DEADLINE_EXCEEDED, Timeout),
        (grpc.StatusCode.INTERNAL, CoreMachineError),
        (grpc.StatusCode.UNIMPLEMENTED, CoreMachineError),
    ],
)
def test_status_codes_map_to_exceptions(code: grpc.StatusCode, expected: type) -> None:
    error = error_from_rpc(FakeRpcError(code, "details here"))
    assert type(error) is expected
    assert str(error) == "details here" and error.code == code.name


def test_invalid_parameters_names_the_field() -> None:
    from_prefix = error_from_rpc(
        FakeRpcError(grpc.StatusCode.INVALID_ARGUMENT, "n: Input should be less than 100001")
    )
    assert isinstance(from_prefix, InvalidParameters) and from_prefix.field == "n"
    nested = error_from_rpc(FakeRpcError(grpc.StatusCode.INVALID_ARGUMENT, "a.b: bad; c: bad"))
    assert isinstance(nested, InvalidParameters) and nested.field == "a.b"
    from_metadata = error_from_rpc(
        FakeRpcError(
            grpc.StatusCode.INVALID_ARGUMENT,
            "job_id must be hex",
            (("coremachine-field", "job_id"),),
        )
    )
    assert isinstance(from_metadata, InvalidParameters) and from_metadata.field == "job_id"
    unnamed = error_from_rpc(FakeRpcError(grpc.StatusCode.INVALID_ARGUMENT, "bad request"))
    assert isinstance(unnamed, InvalidParameters) and unnamed.field is None


def test_timeout_is_also_a_builtin_timeout_error() -> None:
    assert issubclass(Timeout, TimeoutError) and issubclass(Timeout, CoreMachineError)
