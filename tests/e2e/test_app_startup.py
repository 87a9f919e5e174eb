"""A bad app stops the orchestrator and the worker at start-up, with exit code 2
and one log line naming the culprit (no traceback to dig through)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

DUPLICATE = """
from pydantic import BaseModel
from coremachine.app import App, Stage

app = App("mine")
app.task("mine_step")(lambda params: 1)


class Params(BaseModel):
    n: int = 1


app.job("hello_world", parameters=Params, stages=[Stage("one", "mine_step")])
"""
UNKNOWN_TASK = """
from pydantic import BaseModel
from coremachine.app import App, Stage

app = App("broken")


class Params(BaseModel):
    n: int = 1


app.job("broken_job", parameters=Params, stages=[Stage("one", "nobody_defines_this")])
"""


def start(service: str, apps: str, modules: Path) -> tuple[int, list[dict]]:
    env = {
        **{k: v for k, v in os.environ.items() if k != "DATABASE_URL"},
        "COREMACHINE_APPS": apps,
        "PYTHONPATH": str(modules),
        # Nothing listens here: a service that got past loading its apps would hang
        # on its dependencies instead of exiting at once.
        "STATE_ADDRESS": "127.0.0.1:9",
        "BROKER_DATABASE_URL": "postgresql://nobody@127.0.0.1:9/none",
    }
    proc = subprocess.run(
        [sys.executable, "-m", f"coremachine.services.{service}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    return proc.returncode, lines


@pytest.fixture(scope="module")
def modules(tmp_path_factory) -> Path:
    where = tmp_path_factory.mktemp("bad-apps")
    (where / "dup_app.py").write_text(textwrap.dedent(DUPLICATE))
    (where / "unknown_task_app.py").write_text(textwrap.dedent(UNKNOWN_TASK))
    return where


@pytest.mark.parametrize("service", ["orchestrator", "worker"])
@pytest.mark.parametrize(
    ("apps", "named"),
    [
        ("no_such_module:app", ["cannot import app 'no_such_module:app' (COREMACHINE_APPS)"]),
        (
            "coremachine.builtin:create_app,dup_app:app",
            ["job type 'hello_world' is defined twice", "'builtin'", "'mine'"],
        ),
        ("unknown_task_app:app", ["'broken_job'", "stage 'one'", "'nobody_defines_this'"]),
    ],
)
def test_a_bad_app_stops_the_service_with_a_message_naming_it(service, apps, named, modules):
    code, lines = start(service, apps, modules)
    assert code == 2, lines
    [critical] = [line for line in lines if line["level"] == "critical"]
    assert critical["message"].startswith("cannot start:")
    for part in named:
        assert part in critical["message"], critical["message"]
    assert "exception" not in critical
