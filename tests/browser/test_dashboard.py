"""The dashboard in a real browser, against the four services as processes."""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import screenshot, sign_in
from tests.e2e.conftest import wait_for_job
from tests.e2e.test_api_poison import send_garbage as send_poison

pytestmark = pytest.mark.e2e


def submit(http: httpx.Client, **parameters) -> str:
    r = http.post("/api/jobs/submit/hello_world", json=parameters)
    assert r.status_code in (200, 202), r.text
    return r.json()["job"]["job_id"]


def test_sign_in_keeps_the_key_in_a_strict_http_only_cookie_and_sign_out_clears_it(
    page: Page, stack
):
    page.goto("/ui/jobs")
    expect(page).to_have_url(re.compile(r"/ui/login\?next=(%2F|/)ui(%2F|/)jobs$"))
    screenshot(page, "login")
    page.get_by_label("API key").fill("not-a-key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("That API key is not valid.")
    sign_in(page, stack.api_key)
    expect(page.get_by_role("heading", name="Jobs", exact=True)).to_be_visible()
    cookie = next(c for c in page.context.cookies() if c["name"] == "cm_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert stack.api_key not in cookie["value"], "the key must not be readable in the cookie"
    assert page.evaluate("document.cookie") == "", "no cookie is visible to scripts"
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/ui/login\?signed_out=1"))
    assert not [c for c in page.context.cookies() if c["name"] == "cm_session"]
    page.goto("/ui/workers")
    expect(page).to_have_url(re.compile(r"/ui/login"))


def test_a_running_job_s_stage_bars_reach_100_percent_live(page: Page, stack, http):
    sign_in(page, stack.api_key)
    # Slow enough to be watched: 4 slots, 30 greetings of 400 ms, then 30 replies.
    job_id = submit(http, n=30, task_delay_ms=400, message="watched live")
    page.goto(f"/ui/jobs/{job_id}")
    expect(page.locator("#live-state")).to_have_text("live")
    # A marker that a reload would wipe: the bars must move without one.
    page.evaluate("window.__notReloaded = true")
    bars = page.get_by_role("progressbar")
    expect(bars.first).to_be_visible()
    first_seen = int(bars.first.get_attribute("aria-valuenow") or 0)
    assert first_seen < 100, "the job finished before the page could watch it"
    page.wait_for_function(
        "() => { const b = document.querySelector('.stage[data-stage=\"1\"] .bar');"
        " const v = b && +b.getAttribute('aria-valuenow'); return v >= 30 && v < 100; }"
    )
    screenshot(page, "job-live")
    expect(page.get_by_role("progressbar", name="Stage 2 progress")).to_have_attribute(
        "aria-valuenow", "100", timeout=60_000
    )
    expect(page.get_by_role("progressbar", name="Stage 1 progress")).to_have_attribute(
        "aria-valuenow", "100"
    )
    expect(page.locator("#job-status")).to_have_text("completed", timeout=30_000)
    expect(page.locator("#live-state")).to_contain_text("ended")
    assert page.evaluate("window.__notReloaded") is True
    stage1 = page.locator('.stage[data-stage="1"]')
    expect(stage1.locator('[data-field="completed"]')).to_have_text("30")
    expect(stage1.locator('[data-field="eta"]')).to_have_text("0 s")
    # Stage 2 ran entirely under the page's eyes: its rate was measured from the counts.
    stage2 = page.locator('.stage[data-stage="2"]')
    expect(stage2.locator('[data-field="rate"]')).to_have_text(re.compile(r"^[0-9.]+ tasks/s$"))
    assert page.errors == []  # type: ignore[attr-defined]
    page.reload()
    expect(page.get_by_role("heading", name="Result")).to_be_visible()
    screenshot(page, "job")


def test_the_live_page_reconnects_after_the_gateway_restarts(page: Page, stack, http):
    sign_in(page, stack.api_key)
    # About 10 s of work on 4 slots: long enough to outlast a gateway restart.
    job_id = submit(http, n=50, task_delay_ms=400, message="through a restart")
    page.goto(f"/ui/jobs/{job_id}")
    expect(page.locator("#live-state")).to_have_text("live")
    page.evaluate("window.__notReloaded = true")
    stack.kill("api_gateway")  # the stream drops mid-job
    expect(page.locator("#live-state")).to_have_text("reconnecting…")
    stack.restart("api_gateway")
    # EventSource comes back by itself (with Last-Event-ID) and the bars go on.
    expect(page.locator("#live-state")).to_have_text("live", timeout=30_000)
    expect(page.get_by_role("progressbar", name="Stage 2 progress")).to_have_attribute(
        "aria-valuenow", "100", timeout=60_000
    )
    expect(page.locator("#job-status")).to_have_text("completed", timeout=30_000)
    assert page.evaluate("window.__notReloaded") is True
    assert http.get(f"/api/jobs/status/{job_id}").json()["status"] == "completed"


def test_cancel_a_job_after_confirming(page: Page, stack, http):
    sign_in(page, stack.api_key)
    job_id = submit(http, n=20, task_delay_ms=20_000, message="to be cancelled")
    page.goto(f"/ui/jobs/{job_id}")
    # Not done: the page says why (its tasks are running on a worker).
    why = page.get_by_role("region", name="Why is this job waiting?")
    expect(why).to_contain_text("running")
    page.get_by_role("link", name="Cancel job…").click()
    expect(page.get_by_role("heading", name=re.compile("Cancel job"))).to_be_visible()
    screenshot(page, "confirm-cancel")
    page.get_by_role("button", name="Yes, cancel the job").click()
    expect(page).to_have_url(re.compile(rf"/ui/jobs/{job_id}\?done=cancelled"))
    expect(page.get_by_role("status").first).to_have_text("The job was cancelled.")
    expect(page.locator("#job-status")).to_have_text("cancelled")
    assert http.get(f"/api/jobs/status/{job_id}").json()["status"] == "cancelled"
    # Cancelled: the page now offers the resubmit instead.
    expect(page.get_by_role("link", name="Cancel job…")).to_have_count(0)
    expect(page.get_by_role("link", name="Resubmit failed tasks…")).to_be_visible()


def test_submit_a_job_from_the_form_generated_from_its_schema(page: Page, stack, http):
    sign_in(page, stack.api_key)
    page.goto("/ui/job-types")
    page.get_by_role("link", name="hello_world").click()
    expect(page.get_by_role("heading", name="Job type hello_world")).to_be_visible()
    form = page.locator("#submit-form")
    # The schema's bounds are the inputs' bounds: the browser itself refuses n=0.
    form.get_by_label("n").fill("0")
    assert form.get_by_label("n").evaluate("e => e.validity.rangeUnderflow") is True
    # Bad input the form cannot know about: the API's validation message, next to the
    # form, the values kept.
    form.get_by_label("n").fill("4")
    form.get_by_label("message").fill("x" * 1001)
    form.get_by_role("button", name="Submit hello_world").click()
    expect(page.get_by_role("alert")).to_contain_text("message")
    expect(form.get_by_label("n")).to_have_value("4")
    screenshot(page, "job-type")
    form.get_by_label("message").fill("from the form")
    form.get_by_role("button", name="Submit hello_world").click()
    expect(page).to_have_url(re.compile(r"/ui/jobs/[0-9a-f]{64}\?done=submitted"))
    job_id = page.url.split("/ui/jobs/")[1].split("?")[0]
    job = wait_for_job(http, job_id)
    assert job["status"] == "completed"
    assert job["parameters"]["n"] == 4 and job["parameters"]["message"] == "from the form"


def test_a_failed_job_shows_its_failures_by_error_and_resubmits_them(page: Page, stack, http):
    job_id = submit(http, n=6, failure_rate=1.0, message="always fails")
    assert wait_for_job(http, job_id)["status"] == "failed"
    sign_in(page, stack.api_key)
    page.goto(f"/ui/jobs/{job_id}")
    expect(page.locator("#job-status")).to_have_text("failed")
    expect(page.get_by_role("region", name="Error", exact=True)).to_contain_text(
        "STOCHASTIC FAILURE"
    )
    failures = page.get_by_role("region", name="Failed tasks by error")
    rows = failures.locator("tbody tr")
    # The first task out of attempts fails the job (the others are cancelled): its
    # error, with every attempt spent.
    report = http.get(f"/api/jobs/{job_id}/failures").json()
    group = report["groups"][0]
    assert "STOCHASTIC FAILURE" in group["error"] and group["max_attempt"] >= 2
    expect(rows).to_have_count(len(report["groups"]))
    expect(rows.first).to_contain_text(group["error"])
    expect(rows.first).to_contain_text(f"attempt {group['max_attempt']}")
    screenshot(page, "job-failed")
    page.get_by_role("link", name="Resubmit failed tasks…").click()
    page.get_by_role("button", name="Yes, resubmit failed tasks").click()
    expect(page).to_have_url(re.compile(r"done=resubmitted&requeued=\d+"))
    requeued = int(page.url.split("requeued=")[1])
    assert requeued >= 1
    expect(page.get_by_role("status").first).to_contain_text(f"{requeued} tasks run again")
    # They fail again (failure_rate 1.0): the job went round once more.
    assert wait_for_job(http, job_id)["status"] == "failed"
    events = http.get(f"/api/jobs/{job_id}/events").text
    assert "event: job_resubmitted" in events


def send_garbage(stack, job_id: str) -> str:
    """An undecodable task message (dead-lettered by the worker), sent from a thread of
    its own: Playwright's sync API holds this thread's event loop."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(send_poison, stack, job_id).result()


def wait_until(condition, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return value


def letter(http: httpx.Client, message_id: str) -> dict | None:
    messages = http.get("/api/monitor/poison", params={"queue": "tasks"}).json()
    return next(
        (m for m in messages["queues"]["tasks"]["messages"] if m["message_id"] == message_id), None
    )


def test_replay_a_dead_letter_after_confirming(page: Page, stack, http):
    job_id = submit(http, n=1, message="dead letter for the dashboard")
    message_id = send_garbage(stack, job_id)
    dead = wait_until(lambda: letter(http, message_id), "the dead letter")
    sign_in(page, stack.api_key)
    page.goto("/ui/queues")
    row = page.get_by_role("row").filter(has_text=dead["sequence"]).filter(has_text=job_id[:12])
    expect(row).to_be_visible()
    screenshot(page, "queues")
    # With the worker stopped the replayed message waits in the queue, where the page shows it.
    stack.kill("worker")
    try:
        row.get_by_role("link", name="Replay…").click()
        expect(page.get_by_role("heading", name=re.compile("Replay dead letter"))).to_be_visible()
        page.get_by_role("button", name="Yes, replay it to tasks").click()
        expect(page).to_have_url(re.compile(r"/ui/queues\?done=replayed&count=1"))
        expect(page.get_by_role("status")).to_have_text("Replayed 1 dead letter(s) to their queue.")
        assert letter(http, message_id) is None
        queues = {q["queue"]: q for q in http.get("/api/queues").json()["queues"]}
        assert queues["tasks"]["depth"] >= 1 and queues["tasks"]["oldest_age_seconds"] is not None
        tasks_row = page.get_by_role("table", name="Queues").get_by_role(
            "row", name=re.compile("^tasks")
        )
        expect(tasks_row).not_to_contain_text("—")
    finally:
        stack.restart("worker")


def test_mark_a_dead_letter_failed_after_confirming(page: Page, stack, http):
    job_id = submit(http, n=1, task_delay_ms=20_000, message="dead letter to fail")
    message_id = send_garbage(stack, job_id)
    dead = wait_until(lambda: letter(http, message_id), "the dead letter")
    sign_in(page, stack.api_key)
    page.goto(f"/ui/queues/tasks/dead-letters/{dead['sequence']}/fail")
    expect(page.get_by_role("heading", name=re.compile("Mark failed dead letter"))).to_be_visible()
    page.get_by_label("Reason (recorded in the job's error)").fill("garbage in the queue")
    page.get_by_role("button", name="Yes, fail its job and purge it").click()
    expect(page).to_have_url(re.compile(r"/ui/queues\?done=failed&count=1"))
    expect(page.get_by_role("status")).to_have_text(re.compile("Marked failed: 1 job"))
    assert letter(http, message_id) is None
    job = wait_for_job(http, job_id)
    assert job["status"] == "failed" and "garbage in the queue" in (job["error"] or "")


def test_a_reader_sees_no_actions_and_a_forced_post_is_refused(page: Page, stack, http):
    job_id = submit(http, n=5, task_delay_ms=20_000, message="a reader looks")
    message_id = send_garbage(stack, job_id)
    wait_until(lambda: letter(http, message_id), "the dead letter")
    sign_in(page, stack.api_keys["reader"])
    page.goto(f"/ui/jobs/{job_id}")
    expect(page.locator("#job-status")).to_be_visible()
    expect(page.get_by_role("link", name="Cancel job…")).to_have_count(0)
    expect(page.get_by_role("button")).to_have_text(["Sign out"])
    page.goto("/ui/queues")
    expect(page.get_by_role("link", name="Replay…")).to_have_count(0)
    page.goto("/ui/job-types/hello_world")
    expect(page.locator("#submit-form")).to_have_count(0)
    # The confirmation pages refuse too.
    response = page.goto(f"/ui/jobs/{job_id}/cancel")
    assert response is not None and response.status == 403
    # A forged POST with the reader's own session and CSRF token: 403, nothing changes.
    page.goto(f"/ui/jobs/{job_id}")
    csrf = page.locator('input[name="csrf_token"]').first.get_attribute("value")
    refused = page.request.post(f"/ui/jobs/{job_id}/cancel", form={"csrf_token": csrf or ""})
    assert refused.status == 403 and "submitter" in refused.text()
    sequence = letter(http, message_id)["sequence"]
    refused = page.request.post(
        f"/ui/queues/tasks/dead-letters/{sequence}/replay", form={"csrf_token": csrf or ""}
    )
    assert refused.status == 403
    assert http.get(f"/api/jobs/status/{job_id}").json()["status"] != "cancelled"
    assert letter(http, message_id) is not None
    http.post(f"/api/jobs/{job_id}/cancel").raise_for_status()


def test_an_action_without_the_session_s_csrf_token_is_refused(page: Page, stack, http):
    job_id = submit(http, n=5, task_delay_ms=20_000, message="csrf")
    sign_in(page, stack.api_key)
    for form in ({}, {"csrf_token": "forged"}):
        refused = page.request.post(f"/ui/jobs/{job_id}/cancel", form=form)
        assert refused.status == 403 and "CSRF" in refused.text()
    assert http.get(f"/api/jobs/status/{job_id}").json()["status"] != "cancelled"
    http.post(f"/api/jobs/{job_id}/cancel").raise_for_status()


def test_jobs_tasks_workers_pages_filter_and_page(page: Page, stack, http):
    job_id = submit(http, n=60, message="many tasks")
    wait_for_job(http, job_id)
    sign_in(page, stack.api_key)
    page.goto("/ui/jobs")
    counts = page.get_by_role("region", name="Jobs by status")
    expect(counts.locator('[data-status-count="completed"]')).not_to_have_text("0")
    page.get_by_label("Status", exact=True).select_option("completed")
    page.get_by_label("Created", exact=True).select_option("1")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"status=completed"))
    rows = page.get_by_role("table", name="Jobs, newest first").locator("tbody tr")
    expect(rows.first).to_contain_text("completed")
    for text in rows.all_inner_texts():
        assert "completed" in text
    screenshot(page, "jobs")

    page.goto(f"/ui/jobs/{job_id}/tasks")
    table = page.get_by_role("table", name="Tasks by stage and index")
    expect(table.locator("tbody tr")).to_have_count(50)
    screenshot(page, "tasks")
    page.get_by_role("link", name="Next tasks").click()
    expect(table.locator("tbody tr")).to_have_count(50)  # 120 tasks: 50, 50, 20
    page.get_by_role("link", name="Next tasks").click()
    expect(table.locator("tbody tr")).to_have_count(20)
    expect(page.get_by_role("link", name="Next tasks")).to_have_count(0)
    page.goto(f"/ui/jobs/{job_id}/tasks")
    page.get_by_label("Stage", exact=True).select_option("2")
    page.get_by_role("button", name="Filter").click()
    expect(table.locator("tbody tr").first).to_contain_text("reply")

    page.goto("/ui/workers")
    workers = page.get_by_role("table", name="Workers")
    # The replay test's killed worker shows as lost (when it ran first), its successor live.
    expect(
        workers.locator("tbody tr").filter(has_text=re.compile(r"\blive\b")).first
    ).to_be_visible()
    expect(page.get_by_role("table", name="Worker pools")).to_contain_text("tasks")
    screenshot(page, "workers")
    page.goto("/ui/job-types")
    screenshot(page, "job-types")


def test_every_page_can_be_used_from_the_keyboard_with_labelled_controls(page: Page, stack, http):
    job_id = submit(http, n=2, message="keyboard")
    wait_for_job(http, job_id)
    sign_in(page, stack.api_key)
    pages = [
        "/ui/jobs",
        f"/ui/jobs/{job_id}",
        f"/ui/jobs/{job_id}/tasks",
        "/ui/job-types",
        "/ui/job-types/hello_world",
        "/ui/schedules",
        "/ui/workers",
        "/ui/queues",
    ]
    unlabelled_js = """() => [...document.querySelectorAll('input, select, textarea')]
        .filter(e => e.type !== 'hidden')
        .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))
        .map(e => e.outerHTML)"""
    for path in pages:
        page.goto(path)
        assert page.evaluate(unlabelled_js) == [], f"{path}: controls without a label"
        # The first Tab reaches the skip link; Enter moves focus to the content.
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent") == "Skip to content", path
        page.keyboard.press("Enter")
        assert page.evaluate("document.activeElement.id") == "main", path
        # Tab goes on through the page's links and controls to its end, each one
        # visibly focused.
        stops = []
        for _ in range(60):
            page.keyboard.press("Tab")
            tag, outline = page.evaluate(
                "[document.activeElement.tagName,"
                " getComputedStyle(document.activeElement).outlineStyle]"
            )
            if tag == "BODY":
                break  # past the last stop
            # PRE: Chromium lets the keyboard scroll a scrollable block (the result).
            assert tag in ("A", "BUTTON", "INPUT", "SELECT", "TEXTAREA", "PRE"), f"{path}: {tag}"
            assert outline != "none", f"{path}: focused {tag} has no visible focus"
            stops.append(tag)
        assert len(stops) >= 3, f"{path}: {stops}"
    # A form from the keyboard alone: the job filter.
    page.goto("/ui/jobs")
    page.get_by_label("Status", exact=True).focus()
    page.keyboard.press("ArrowDown")  # any -> the first status
    page.get_by_role("button", name="Filter").focus()
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"status="))
