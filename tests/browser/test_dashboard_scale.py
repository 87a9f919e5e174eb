"""The dashboard on a job of 100,000 tasks: pages render from stage counters and pages
of tasks, never from all tasks.

Not a timed test: what it checks is that no page carries more than one page
of tasks and that the counts come from the stage counters. How long the
pages take is measured by `python -m bench.dashboard` (docs/dashboard.md).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Page, expect

from coremachine.stack.processes import Stack
from tests.browser.conftest import sign_in
from tests.databases import drop_database
from tests.e2e.conftest import auth_headers, make_stack

pytestmark = pytest.mark.e2e

TASKS = 100_000


@pytest.fixture(scope="module")
def stack(admin_url: str, tmp_path_factory) -> Iterator[Stack]:
    stack, url = make_stack(admin_url, tmp_path_factory.mktemp("ui-scale"))
    stack.up()
    # No worker: the 100,000 tasks stay queued for as long as the test looks at them.
    stack.kill("worker")
    yield stack
    stack.stop()
    drop_database(admin_url, url)


@pytest.fixture(scope="module")
def big_job(stack: Stack) -> str:
    with httpx.Client(base_url=stack.http_url, headers=auth_headers(stack.api_key)) as http:
        r = http.post("/api/jobs/submit/hello_world", json={"n": TASKS, "message": "big"})
        job_id = r.raise_for_status().json()["job"]["job_id"]
        deadline = time.monotonic() + 120
        while True:
            stages = http.get(f"/api/jobs/status/{job_id}").json()["stages"]
            if stages and stages[0]["task_count"] == TASKS:
                return job_id
            assert time.monotonic() < deadline, f"stage 1 not planned: {stages}"
            time.sleep(0.2)


def test_pages_of_a_100000_task_job_carry_one_page_of_tasks_at_most(stack: Stack, big_job: str):
    with httpx.Client(base_url=stack.http_url, timeout=30) as ui:
        token = ui.get("/ui/login").text.split('name="csrf_token" value="')[1].split('"')[0]
        ui.post("/ui/login", data={"csrf_token": token, "api_key": stack.api_key})
        for path in (
            f"/ui/jobs/{big_job}",
            f"/ui/jobs/{big_job}/tasks",
            f"/ui/jobs/{big_job}/tasks?stage=1&status=queued",
            "/ui/jobs",
            "/ui/queues",
        ):
            r = ui.get(path)
            assert r.status_code == 200, f"{path}: {r.status_code}"
            # A page never carries more than one page of tasks.
            assert r.text.count("<tr>") <= 60, path


def test_the_job_page_shows_the_100000_tasks_in_a_browser(page: Page, stack: Stack, big_job):
    sign_in(page, stack.api_key)
    page.goto(f"/ui/jobs/{big_job}")
    stage1 = page.locator('.stage[data-stage="1"]')
    expect(stage1.locator('[data-field="total"]')).to_have_text(str(TASKS))
    expect(stage1.locator('[data-field="waiting"]')).to_have_text(str(TASKS))
    expect(page.locator("#live-state")).to_have_text("live")
    page.goto(f"/ui/jobs/{big_job}/tasks")
    expect(
        page.get_by_role("table", name="Tasks by stage and index").locator("tbody tr")
    ).to_have_count(50)
