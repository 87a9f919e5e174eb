"""The schedules pages in a real browser: list, one schedule with its firings, actions."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import screenshot, sign_in

pytestmark = pytest.mark.e2e


def create_schedule(http: httpx.Client, **fields) -> str:
    name = f"ui-{uuid.uuid4().hex[:8]}"
    body = {
        "name": name,
        "job_type": "hello_world",
        "parameters": {"n": 2, "message": "from a schedule"},
        "cron": "0 3 * * *",  # not during the test: the firings are the test's own
        "timezone": "Europe/Paris",
        **fields,
    }
    http.post("/api/schedules", json=body).raise_for_status()
    return name


def test_pause_resume_and_trigger_a_schedule_after_confirming(page: Page, stack, http):
    name = create_schedule(http, description="nightly report")
    sign_in(page, stack.api_key)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Schedules").click()
    row = page.get_by_role("table", name="Schedules").locator("tr", has_text=name)
    expect(row).to_contain_text("0 3 * * * (Europe/Paris)")
    expect(row).to_contain_text("active")
    screenshot(page, "schedules")
    row.get_by_role("link", name=name).click()
    expect(page.get_by_role("heading", name=f"Schedule {name}")).to_be_visible()
    expect(page.get_by_text("It has not fired yet.")).to_be_visible()

    page.get_by_role("link", name="Pause…").click()
    expect(page.get_by_role("heading", name=re.compile("Pause: schedule"))).to_be_visible()
    page.get_by_role("button", name="Yes, pause").click()
    expect(page.get_by_role("status")).to_have_text("Pause: done.")
    assert http.get(f"/api/schedules/{name}").json()["paused"] is True
    page.get_by_role("link", name="Resume…").click()
    page.get_by_role("button", name="Yes, resume").click()
    expect(page.get_by_role("link", name="Pause…")).to_be_visible()
    assert http.get(f"/api/schedules/{name}").json()["paused"] is False

    page.get_by_role("link", name="Trigger now…").click()
    page.get_by_role("button", name="Yes, trigger now").click()
    expect(page).to_have_url(re.compile(r"/ui/jobs/[0-9a-f]{64}\?done=submitted"))
    job_id = page.url.split("/ui/jobs/")[1].split("?")[0]
    expect(page.locator("#job-status")).to_have_text("completed", timeout=60_000)
    firings = http.get(f"/api/schedules/{name}/firings").json()["firings"]
    assert [(f["kind"], f["job_id"]) for f in firings] == [("manual", job_id)]
    page.goto(f"/ui/schedules/{name}")
    firing = page.get_by_role("table", name="Firings (newest first)").locator("tbody tr")
    expect(firing).to_have_count(1)
    expect(firing).to_contain_text("manual")
    screenshot(page, "schedule")


def test_a_reader_sees_a_schedule_but_cannot_act_on_it(page: Page, stack, http):
    name = create_schedule(http)
    sign_in(page, stack.api_keys["reader"])
    page.goto(f"/ui/schedules/{name}")
    expect(page.get_by_role("heading", name=f"Schedule {name}")).to_be_visible()
    expect(page.get_by_role("group", name="Schedule actions")).to_have_count(0)
    response = page.goto(f"/ui/schedules/{name}/trigger")
    assert response is not None and response.status == 403
    page.goto(f"/ui/schedules/{name}")
    csrf = page.locator('input[name="csrf_token"]').first.get_attribute("value")
    for action in ("pause", "trigger"):
        refused = page.request.post(f"/ui/schedules/{name}/{action}", form={"csrf_token": csrf})
        assert refused.status == 403 and "submitter" in refused.text()
    assert http.get(f"/api/schedules/{name}").json()["paused"] is False
    assert http.get(f"/api/schedules/{name}/firings").json()["firings"] == []


def test_bad_schedule_addresses_answer_with_a_clear_error(page: Page, stack, http):
    name = create_schedule(http)
    sign_in(page, stack.api_key)
    for path, status in (
        ("/ui/schedules/no-such-schedule", 404),
        ("/ui/schedules/Not%20A%20Name", 400),
        (f"/ui/schedules/{name}/explode", 404),
    ):
        response = page.goto(path)
        assert response is not None and response.status == status, path
