"""Browser tests: the four services as processes, a headless Chromium driven by Playwright."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from coremachine.stack.processes import Stack
from tests.browser.chromium import LAUNCH_ARGS, NoChromium, chromium_path
from tests.e2e.conftest import http, running_stack  # noqa: F401 (http: a fixture)

ARTIFACTS = Path(__file__).resolve().parents[2] / ".data" / "test-artifacts" / "ui"


# Package scope, not session: Playwright's sync API holds an event loop in this
# thread while it runs, and later tests (tests/e2e) call asyncio.run().
@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    try:
        path = chromium_path()
        browser = playwright.chromium.launch(executable_path=path, args=LAUNCH_ARGS)
    except NoChromium as exc:
        pytest.fail(str(exc), pytrace=False)
    except Exception as exc:  # Playwright's own launch errors
        pytest.fail(f"Chromium did not start ({path}): {exc}", pytrace=False)
    yield browser
    browser.close()


@pytest.fixture(scope="module")
def stack(admin_url: str, tmp_path_factory) -> Iterator[Stack]:
    with running_stack(
        admin_url,
        tmp_path_factory.mktemp("ui-stack"),
        # Few slots per worker, so a job of slow tasks takes long enough to be watched.
        extra_env={
            "TASK_RETRY_BASE_MS": "50",
            "TASK_RETRY_MAX_MS": "200",
            "WORKER_CONCURRENCY": "4",
        },
    ) as stack:
        yield stack


@pytest.fixture
def context(browser: Browser, stack: Stack) -> Iterator[BrowserContext]:
    context = browser.new_context(base_url=stack.http_url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(20_000)
    yield context
    context.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors  # type: ignore[attr-defined]
    return page


def sign_in(page: Page, key: str) -> None:
    page.goto("/ui/login")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/ui/jobs"))


def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
