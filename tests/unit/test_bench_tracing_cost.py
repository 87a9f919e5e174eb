"""The stack-level tracing cost of `make bench`: the receiver and the arithmetic."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from bench.tracing_cost import DroppingOtlpReceiver, tracing_cost


def test_the_receiver_accepts_exports_and_counts_them() -> None:
    with DroppingOtlpReceiver() as receiver:
        answer = httpx.post(f"{receiver.endpoint}/v1/traces", content=b"x" * 100)
        assert answer.status_code == 200
        assert (receiver.requests, receiver.bytes) == (1, 100)


def test_the_second_run_exports_to_the_receiver_and_the_cost_compares_both() -> None:
    envs: list[Mapping[str, str]] = []

    def run(env: Mapping[str, str]) -> dict[str, Any]:
        envs.append(dict(env))
        if env:  # the traced run: what the services' exporter would send
            httpx.post(f"{env['OTEL_EXPORTER_OTLP_ENDPOINT']}/v1/traces", content=b"spans")
        return {"tasks_per_s": 800.0 if env else 1000.0}

    result = tracing_cost(run, 10)
    assert envs[0] == {}
    assert envs[1]["OTEL_TRACES_SAMPLER"] == "always_on"
    assert result["cost_pct"] == 20.0
    assert result["exported"] == {"requests": 1, "bytes": 5}
