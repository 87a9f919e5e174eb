"""Fixtures of the SDK's unit tests: a fresh fake gateway per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.sdk.fake_gateway import FakeGateway, running_gateway


@pytest.fixture
def gateway() -> Iterator[FakeGateway]:
    yield from running_gateway()
