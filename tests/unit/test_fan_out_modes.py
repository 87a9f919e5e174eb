"""The fan-out modes a stage can declare, and failure tolerance per stage."""

from __future__ import annotations

import json

from coremachine.services.orchestrator.planner import _fan_in_params
from coremachine.services.orchestrator.registry import (
    Custom,
    FanIn,
    FromParameter,
    MatchPrevious,
    PerItem,
    PlanContext,
    PreviousResult,
    Single,
    StageSpec,
)


def ctx(previous=(), **parameters) -> PlanContext:
    return PlanContext("j" * 64, "t", 2, parameters, list(previous))


PREVIOUS = [
    PreviousResult(0, "completed", {"items": ["a", "b"], "v": 0}, ""),
    PreviousResult(1, "failed", None, "boom"),
    PreviousResult(2, "completed", {"items": ["c"], "v": 2}, ""),
]


def test_from_parameter_plans_n_tasks():
    planned = FromParameter("n", lambda c, i: {"i": i}).plan(ctx(n=3))
    assert planned == [{"i": 0}, {"i": 1}, {"i": 2}]


def test_match_previous_gives_task_i_the_result_of_task_i():
    planned = MatchPrevious(lambda c, p: {"i": p.task_index, "got": p.result}).plan(ctx(PREVIOUS))
    assert [t["i"] for t in planned] == [0, 1, 2]
    assert planned[1]["got"] is None and planned[2]["got"]["v"] == 2


def test_per_item_plans_one_task_per_item_of_the_previous_results():
    mode = PerItem(
        lambda c: [item for p in c.previous_completed() for item in p.result["items"]],
        lambda c, i, item: {"item": item},
    )
    assert mode.plan(ctx(PREVIOUS)) == [{"item": "a"}, {"item": "b"}, {"item": "c"}]


def test_single_and_custom_hook():
    assert Single(lambda c: {"only": True}).plan(ctx()) == [{"only": True}]
    hook = Custom(lambda c: [{"k": k} for k in sorted(c.parameters)])
    assert hook.plan(ctx(b=1, a=2)) == [{"k": "a"}, {"k": "b"}]


def test_fan_in_inlines_small_results_and_references_large_ones():
    small = _fan_in_params({}, ctx(PREVIOUS), inline_limit=64 * 1024)
    assert [r["task_index"] for r in small["previous_results"]] == [0, 1, 2]
    big = [PreviousResult(i, "completed", {"x": "y" * 100}, "") for i in range(1000)]
    large = _fan_in_params({}, ctx(big), inline_limit=64 * 1024)
    assert large["previous_results"] == {"$stage_results": {"job_id": "j" * 64, "stage": 1}}
    assert len(json.dumps(large)) < 200
    assert FanIn().plan(ctx()) == [{}]


def test_failure_tolerance_as_count_fraction_or_function_of_parameters():
    assert StageSpec("s", "noop", Single(lambda c: {})).max_failed_tasks(10, {}) == 0
    assert (
        StageSpec("s", "noop", Single(lambda c: {}), tolerate_failures=3).max_failed_tasks(10, {})
        == 3
    )
    assert (
        StageSpec("s", "noop", Single(lambda c: {}), tolerate_fraction=0.25).max_failed_tasks(
            10, {}
        )
        == 2
    )
    by_param = StageSpec("s", "noop", Single(lambda c: {}), tolerate_failures=lambda p: p["k"])
    assert by_param.max_failed_tasks(10, {"k": -1}) == -1
