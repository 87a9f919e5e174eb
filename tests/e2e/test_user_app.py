"""A user's own job type, in a package of its own outside this repository,
installed and run on the real services with two worker pools.

The package registers its app in the `coremachine.apps` entry-point group, so
the services load it (with the built-in app) without any setting; its second
stage runs on the "gpu" pool, whose worker is another process. The job is
submitted over HTTP and through the SDK, and the database says which worker
ran each task, from which queue.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from coremachine.testing import CoreMachineStack
from tests.e2e.conftest import auth_headers, wait_for_job

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
MARKER = "<!-- user-app: tiles_jobs/jobs.py"


def readme_user_code() -> str:
    """The README's "Write your own job" code, as it is printed there."""
    readme = (ROOT / "README.md").read_text()
    after = readme[readme.index(MARKER) :]
    block = after[after.index("```python\n") + len("```python\n") :]
    return block[: block.index("```")]


PYPROJECT = """
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "tiles-jobs"
version = "1.0.0"
dependencies = []

[project.entry-points."coremachine.apps"]
tiles = "tiles_jobs.jobs:app"

[tool.setuptools]
packages = ["tiles_jobs"]
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The package written in a temporary directory and installed (pip --target)."""
    source = tmp_path_factory.mktemp("user-package")
    (source / "tiles_jobs").mkdir()
    (source / "tiles_jobs" / "__init__.py").write_text("")
    code = readme_user_code()
    assert len(code.strip().splitlines()) <= 40, "the README promises under 40 lines"
    (source / "tiles_jobs" / "jobs.py").write_text(code)
    (source / "pyproject.toml").write_text(PYPROJECT)
    site = tmp_path_factory.mktemp("site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--target",
            str(site),
            str(source),
        ],
        check=True,
        capture_output=True,
    )
    assert (site / "tiles_jobs" / "jobs.py").exists()
    return site


@pytest.fixture(scope="module")
def cm(installed: Path, admin_url: str) -> Iterator[CoreMachineStack]:
    # No COREMACHINE_APPS: the entry points of the installed packages decide.
    with CoreMachineStack(
        None,
        pools=["tasks", "gpu"],
        env={"PYTHONPATH": str(installed)},
        database_url=admin_url,
    ) as stack:
        yield stack


def ran_on(cm: CoreMachineStack, job_id: str) -> dict[int, set[tuple[str, str]]]:
    """Per stage: the (worker, queue) of every attempt, from the task_started events."""
    with psycopg.connect(cm.database_url) as conn:
        rows = conn.execute(
            "SELECT stage, data->>'worker_id', data->>'queue' FROM coremachine.job_events"
            " WHERE job_id = %s AND event_type = 'task_started'",
            (job_id,),
        ).fetchall()
    out: dict[int, set[tuple[str, str]]] = {}
    for stage, worker, queue in rows:
        out.setdefault(stage, set()).add((worker, queue))
    return out


def test_the_users_job_runs_over_http_with_its_second_stage_on_the_gpu_pool(cm):
    with httpx.Client(base_url=cm.http_url, headers=auth_headers(cm.api_key), timeout=30) as http:
        types = http.get("/api/job-types").raise_for_status().json()["job_types"]
        tiles = next(t for t in types if t["job_type"] == "tiles")
        assert tiles["app"] == "tiles"
        assert [(s["task_type"], s["queue"]) for s in tiles["stages"]] == [
            ("cut", "tasks"),
            ("render", "gpu"),
            ("assemble", "tasks"),
        ]
        assert tiles["parameters_schema"]["properties"]["tiles"]["maximum"] == 1000
        refused = http.post("/api/jobs/submit/tiles", json={"tiles": 0})
        assert refused.status_code == 400 and "tiles" in refused.json()["message"]

        submitted = http.post("/api/jobs/submit/tiles", json={"tiles": 6, "scale": 3})
        assert submitted.status_code == 202, submitted.text
        job = wait_for_job(http, submitted.json()["job"]["job_id"])
    assert job["status"] == "completed", job
    assert job["result"] == {"pixels": 3 * sum(range(6))}
    assert [s["queue"] for s in job["stages"]] == ["tasks", "gpu", "tasks"]
    assert job["stages"][1]["last_progress"]["message"] == "rendered"
    assert ran_on(cm, job["job_id"]) == {
        1: {("worker-tasks", "tasks")},
        2: {("worker-gpu", "gpu")},
        3: {("worker-tasks", "tasks")},
    }


def test_the_users_job_runs_through_the_sdk_next_to_the_builtin_ones(cm):
    job = cm.run("tiles", tiles=3, scale=10)
    assert job.status.value == "completed", job
    assert job.result == {"pixels": 30}
    # The built-in app was loaded too (its own entry point).
    assert cm.run("hello_world", n=2).status.value == "completed"


def test_a_stage_whose_pool_has_no_live_worker_waits_and_says_so(cm):
    cm.stop_pool("gpu")  # the pool's only worker says it stops: no live consumer of "gpu"
    with httpx.Client(base_url=cm.http_url, headers=auth_headers(cm.api_key), timeout=30) as http:
        job_id = http.post("/api/jobs/submit/tiles", json={"tiles": 2, "scale": 7}).json()["job"][
            "job_id"
        ]
        deadline = time.monotonic() + 60
        while True:
            job = http.get(f"/api/jobs/status/{job_id}").json()
            if job["waiting"]:
                break
            assert time.monotonic() < deadline, job
            time.sleep(0.05)
        assert "queue 'gpu', which no live worker consumes" in job["waiting"]
        assert job["status"] == "processing" and job["stage"] == 2
        # Nothing was lost or dead-lettered while it waited: the pool comes back.
        cm.start_pool("gpu")
        done = wait_for_job(http, job_id)
    assert done["status"] == "completed" and done["waiting"] is None
    assert done["result"] == {"pixels": 7}
