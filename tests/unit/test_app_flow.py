"""Flow control in the public job API: what a job type declares, what its
definition (and so its fingerprint) records, and what the planner makes of
it for one job's parameters."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from coremachine.app import App, AppError, ConcurrencyKey, FromParameter, RateLimit, Stage
from coremachine.app._registry import Registry
from coremachine.services.orchestrator.claim_check import StagePayloads
from coremachine.services.orchestrator.planner import Planner, PlannerDefaults, PlanningError
from coremachine.shared.blobstores.memory import MemoryBlobStore
from coremachine.shared.domain.jobs import RateLimitPolicy
from coremachine.shared.domain.retry import RetryPolicy
from coremachine.shared.state_clients.memory import InMemoryStateClient


class Params(BaseModel):
    tenant: str = "acme"
    region: str = "eu"
    n: int = 3


def app_with(**job_options) -> tuple[App, Registry]:
    app = App("flow")

    @app.task(rate_limit=RateLimit(per_second=20, name="partner-api"))
    def call(params: dict) -> None:
        return None

    @app.task
    def plain(params: dict) -> None:
        return None

    stages = job_options.pop(
        "stages",
        [
            Stage(
                "calls",
                call,
                FromParameter("n"),
                concurrency=[ConcurrencyKey("region:{region}", limit=10)],
            ),
            Stage("plain", plain),
        ],
    )
    app.job("flowing", parameters=Params, stages=stages, **job_options)
    return app, Registry([app])


def test_flow_limits_are_part_of_the_definition_only_when_declared():
    _, bare = app_with(stages=[Stage("plain", "plain")])
    definition = bare.job_type("flowing").definition()
    assert "concurrency" not in definition and "max_running" not in definition
    assert set(definition["stages"][0]) == {
        "name", "task_type", "fan_out", "queue", "retry", "tolerate_failures",
        "tolerate_fraction", "timeout", "heartbeat_timeout", "previous_results",
    }  # fmt: skip
    _, flowing = app_with(
        concurrency=[ConcurrencyKey("tenant:{tenant}", limit=5)], max_running=2, priority=8
    )
    job_type = flowing.job_type("flowing")
    definition = job_type.definition()
    assert definition["concurrency"] == [{"key": "tenant:{tenant}", "limit": 5}]
    assert (definition["max_running"], definition["priority"]) == (2, 8)
    assert definition["stages"][0]["rate_limit"] == {
        "name": "partner-api",
        "per_second": 20.0,
        "burst": 20,
    }
    assert definition["stages"][0]["concurrency"] == [{"key": "region:{region}", "limit": 10}]
    assert job_type.flow_limited and not bare.job_type("flowing").flow_limited
    assert flowing.fingerprint("flowing") != bare.fingerprint("flowing")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"concurrency": [ConcurrencyKey("tenant:{customer}", limit=5)]}, "customer"),
        ({"concurrency": ["tenant"]}, "ConcurrencyKey"),
        ({"max_running": 0}, "max_running"),
        ({"priority": 12}, "priority"),
    ],
)
def test_bad_flow_declarations_stop_the_app_naming_them(options: dict, message: str):
    with pytest.raises(AppError, match=message):
        app_with(**options)


def test_limits_themselves_are_checked_when_declared():
    with pytest.raises(AppError, match="limit"):
        ConcurrencyKey("k", limit=0)
    with pytest.raises(AppError, match="per_second"):
        RateLimit(per_second=0)
    assert RateLimit(per_second=2.5).bucket_size == 3


def planner_for(registry: Registry) -> Planner:
    defaults = PlannerDefaults(RetryPolicy(), "tasks", 2000)
    return Planner(
        InMemoryStateClient(),
        registry,
        defaults,
        StagePayloads(MemoryBlobStore(), threshold_bytes=10**6),
    )


async def test_the_planner_renders_keys_from_the_jobs_parameters():
    _, registry = app_with(concurrency=[ConcurrencyKey("tenant:{tenant}", limit=5)])
    job_type = registry.job_type("flowing")
    assert job_type is not None
    plan = await planner_for(registry).plan_first_stage(
        "0" * 64, job_type, {"tenant": "globex", "region": "us", "n": 2}
    )
    assert plan is not None
    assert plan.policy.concurrency == (("region:us", 10), ("tenant:globex", 5))
    assert plan.policy.rate_limit == RateLimitPolicy("partner-api", 20.0, 20)


async def test_a_key_that_cannot_be_computed_is_a_planning_error():
    def broken(params) -> str:
        raise KeyError("tenant")

    _, registry = app_with(concurrency=[ConcurrencyKey(broken, limit=1)])
    job_type = registry.job_type("flowing")
    assert job_type is not None
    planner = planner_for(registry)
    ctx = planner._context("0" * 64, job_type, 1, {"n": 1}, [])
    with pytest.raises(PlanningError, match="concurrency key"):
        await planner._plan(ctx, job_type)
