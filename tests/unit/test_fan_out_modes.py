"""The fan-out modes a stage can declare, and failure tolerance per stage."""

from __future__ import annotations

from coremachine.app import (
    Custom,
    FanIn,
    FromParameter,
    MatchPrevious,
    PerItem,
    PlanContext,
    PreviousResult,
    Single,
    Stage,
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


def test_default_builds_give_each_task_its_index_item_or_previous_result():
    assert FromParameter("n").plan(ctx(n=2)) == [{"index": 0}, {"index": 1}]
    assert MatchPrevious().plan(ctx(PREVIOUS))[2] == {"index": 2, "previous": PREVIOUS[2].result}
    assert PerItem(lambda c: ["x", "y"]).plan(ctx()) == [
        {"index": 0, "item": "x"},
        {"index": 1, "item": "y"},
    ]
    assert Single().plan(ctx()) == [{}]


def test_fan_in_is_one_task_whose_handlers_get_the_previous_results():
    # The results are not copied into the task's parameters: the worker hands
    # them to the handler (ctx.previous_results), however large the stage was.
    assert FanIn().plan(ctx(PREVIOUS)) == [{}]
    assert Stage("s", "noop", FanIn()).wants_previous_results
    assert not Stage("s", "noop", Single()).wants_previous_results
    assert Stage("s", "noop", Single(), previous_results=True).wants_previous_results


def test_known_counts_let_stage_one_be_planned_at_submit_only_when_small():
    assert FromParameter("n").known_count(ctx(n=7)) == 7
    assert FromParameter("n").known_count(ctx()) is None
    assert MatchPrevious().known_count(ctx(PREVIOUS)) == 3
    assert FanIn().known_count(ctx()) == Single().known_count(ctx()) == 1
    assert PerItem(lambda c: []).known_count(ctx()) is None


def test_failure_tolerance_as_count_fraction_or_function_of_parameters():
    assert Stage("s", "noop", Single(lambda c: {})).max_failed_tasks(10, {}) == 0
    assert (
        Stage("s", "noop", Single(lambda c: {}), tolerate_failures=3).max_failed_tasks(10, {}) == 3
    )
    assert (
        Stage("s", "noop", Single(lambda c: {}), tolerate_fraction=0.25).max_failed_tasks(10, {})
        == 2
    )
    by_param = Stage("s", "noop", Single(lambda c: {}), tolerate_failures=lambda p: p["k"])
    assert by_param.max_failed_tasks(10, {"k": -1}) == -1
