"""Defining apps, and every way an app can be unusable: each stops a service at
start-up with a message that names the culprit."""

from __future__ import annotations

import re
import sys
import types
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict

from coremachine.app import App, AppError, FanIn, FromParameter, MatchPrevious, Stage
from coremachine.app._registry import AppSource, Registry, app_sources, load_app, load_registry


class Params(BaseModel):
    n: int = 2


def app_with(name: str = "a", *, stages: list[Stage] | None = None, **job: Any) -> App:
    app = App(name)
    app.task("step")(lambda params: params)
    app.job(
        "report",
        parameters=job.pop("parameters", Params),
        stages=stages or [Stage("one", "step", FromParameter("n"))],
        **job,
    )
    return app


def test_a_job_type_defined_twice_in_an_app():
    app = app_with()
    with pytest.raises(AppError, match="job type 'report' is defined twice"):
        app.job("report", parameters=Params, stages=[Stage("one", "step")])


def test_a_job_type_defined_by_two_apps_names_both():
    other = App("b")
    other.job("report", parameters=Params, stages=[Stage("one", "step")])
    with pytest.raises(AppError, match="'report' is defined twice: by app 'a' and by app 'b'"):
        Registry([app_with("a"), other])


def test_a_task_type_defined_by_two_apps_names_both():
    first, second = App("first"), App("second")
    first.task("step")(lambda params: 1)
    second.task("step")(lambda params: 2)
    with pytest.raises(AppError, match="task type 'step' is defined twice: by app 'first'"):
        Registry([first, second])


def test_a_stage_naming_an_unknown_task_type_names_the_job_stage_and_task_type():
    app = app_with(stages=[Stage("one", "step"), Stage("two", "no_such_step", MatchPrevious())])
    with pytest.raises(AppError) as raised:
        Registry([app])
    message = str(raised.value)
    assert "'report'" in message and "stage 'two'" in message and "'no_such_step'" in message


def test_a_task_type_declared_here_and_defined_in_another_app_is_fine():
    planner = App("planner")
    planner.declare_task("render", queue="gpu")
    planner.job("thumbs", parameters=Params, stages=[Stage("render", "render")])
    workers = App("gpu-workers")
    workers.task("render", queue="gpu")(lambda params: "rendered")
    registry = Registry([planner, workers])
    assert set(registry.handlers()) == {"render"}
    [stage] = registry.job_type("thumbs").stages  # type: ignore[union-attr]
    assert registry.queue_of(stage, "tasks") == "gpu"
    mismatched = App("other")
    mismatched.task("render", queue="cpu")(lambda params: "x")
    with pytest.raises(AppError, match="queue 'gpu' in app 'planner' but 'cpu'"):
        Registry([planner, mismatched])


def test_a_parameter_model_without_a_json_schema_names_the_model():
    class Opaque:
        pass

    class Unserializable(BaseModel):
        model_config = ConfigDict(arbitrary_types_allowed=True)
        thing: Opaque | None = None

    with pytest.raises(AppError, match="parameter model Unserializable is not JSON-serializable"):
        Registry([app_with(parameters=Unserializable)])


def no_parameters() -> int:
    return 1


@pytest.mark.parametrize(
    ("define", "match"),
    [
        (
            lambda app: app.job("Report", parameters=Params, stages=[Stage("s", "t")]),
            "job type name",
        ),
        (lambda app: app.job("r", parameters=dict, stages=[Stage("s", "t")]), "pydantic model"),
        (lambda app: app.job("r", parameters=Params, stages=[]), "has no stages"),
        (
            lambda app: app.job("r", parameters=Params, stages=[Stage("s", "t", queue="GPU!")]),
            "queue name",
        ),
        (
            lambda app: app.job("r", parameters=Params, stages=[Stage("s", "t"), Stage("s", "t")]),
            "two stages of the same name",
        ),
        (lambda app: app.task("bad name")(lambda params: 1), "task type name"),
        (lambda app: app.task(no_parameters), "must take the task's parameters"),
    ],
)
def test_bad_definitions_are_refused_as_they_are_made(define, match):
    with pytest.raises(AppError, match=match):
        define(App("app"))


def test_an_app_that_cannot_be_imported_names_its_path_and_the_setting():
    with pytest.raises(AppError) as raised:
        load_registry("no_such_package.jobs:app")
    message = str(raised.value)
    assert "'no_such_package.jobs:app' (COREMACHINE_APPS)" in message
    assert "ModuleNotFoundError" in message


def test_an_app_path_must_name_an_app_or_a_function_making_one(monkeypatch):
    module = types.ModuleType("unit_apps")
    module.app = app_with()  # type: ignore[attr-defined]
    module.make = lambda: app_with("made")  # type: ignore[attr-defined]
    module.number = 42  # type: ignore[attr-defined]
    module.broken = lambda: 1 / 0  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "unit_apps", module)
    assert load_app(AppSource("unit_apps:app", "test")).name == "a"
    assert load_app(AppSource("unit_apps:make", "test")).name == "made"
    with pytest.raises(AppError, match=re.escape("is a int, not a coremachine.app.App")):
        load_app(AppSource("unit_apps:number", "test"))
    with pytest.raises(AppError, match="has no 'missing'"):
        load_app(AppSource("unit_apps:missing", "test"))
    with pytest.raises(AppError, match="building it failed: ZeroDivisionError"):
        load_app(AppSource("unit_apps:broken", "test"))
    with pytest.raises(AppError, match=re.escape("must look like 'package.module:app'")):
        load_app(AppSource("unit_apps", "test"))


def test_without_the_setting_the_installed_entry_points_are_loaded():
    sources = app_sources(None)
    assert (
        AppSource("coremachine.builtin:create_app", "entry point coremachine.apps:builtin")
        in sources
    )
    assert app_sources(" a.b:app , c.d:make ") == [
        AppSource("a.b:app", "COREMACHINE_APPS"),
        AppSource("c.d:make", "COREMACHINE_APPS"),
    ]


# -- fingerprints --------------------------------------------------------------


def fingerprint(app: App) -> str:
    return Registry([app]).fingerprint("report")


def test_handler_and_planning_code_do_not_change_the_fingerprint():
    one = app_with(stages=[Stage("one", "step", FromParameter("n", lambda ctx, i: {"a": i}))])
    other = App("a")
    other.task("step")(lambda params: "different handler code")
    other.job(
        "report",
        parameters=Params,
        stages=[Stage("one", "step", FromParameter("n", lambda ctx, i: {"b": i * 2}))],
    )
    assert fingerprint(one) == fingerprint(other)


@pytest.mark.parametrize(
    "change",
    [
        {"stages": [Stage("one", "step", FromParameter("m"))]},  # another parameter
        {"stages": [Stage("one", "step", FromParameter("n")), Stage("two", "step", FanIn())]},
        {"stages": [Stage("one", "step", FromParameter("n"), queue="gpu")]},
        {"stages": [Stage("one", "step", FromParameter("n"), timeout=5)]},
        {"stages": [Stage("one", "step", FromParameter("n"), tolerate_failures=2)]},
        {"version": "2"},
        {"aggregate": lambda ctx: None},
    ],
)
def test_what_decides_how_a_job_runs_changes_the_fingerprint(change):
    assert fingerprint(app_with(**change)) != fingerprint(app_with())


def test_a_parameter_schema_change_changes_the_fingerprint():
    class MoreParams(Params):
        extra: str = "x"

    assert fingerprint(app_with(parameters=MoreParams)) != fingerprint(app_with())
