"""Browser tests: Playwright driving Debian's chromium against pytest-django's ``live_server``.

``playwright install`` cannot download browsers here, so the harness launches the system chromium
(``apt-get install chromium``). Without it the browser tests are skipped locally and fail in CI
(``CI`` or ``REQUIRE_BROWSER`` set). Screenshots of failing tests go to ``test-artifacts/``.
"""

import os
import re
import shutil
from pathlib import Path

import pytest

from tests.postgres import env_flag

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]
TIMEOUT_MS = 15_000


def chromium_executable() -> str | None:
    for candidate in (os.environ.get("CHROMIUM_PATH"), shutil.which("chromium"), "/usr/bin/chromium"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def browser_required() -> bool:
    return env_flag("REQUIRE_BROWSER") or env_flag("CI")


def skip_or_fail(reason: str):
    if browser_required():
        pytest.fail(f"{reason} (REQUIRE_BROWSER/CI is set, so browser tests may not be skipped)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser():
    executable = chromium_executable()
    if executable is None:
        skip_or_fail("chromium not installed: apt-get install chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        skip_or_fail("playwright not installed: python3 dev.py test installs it")
    playwright = sync_playwright().start()
    try:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
    except Exception:
        playwright.stop()
        raise
    yield browser
    browser.close()
    playwright.stop()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def page(browser, request):
    """A fresh browser context (no cookies) per test; a screenshot is kept when the test fails."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB")
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    yield page
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid)
        try:
            page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        except Exception as error:  # a screenshot must never hide the real failure
            print(f"could not save a screenshot: {error}")
    context.close()


def login(page, live_server, username: str, password: str) -> None:
    """Log in through the portal's login form at /login/ and wait to leave it."""
    page.goto(f"{live_server.url}/login/")
    form = page.locator("form").filter(has=page.locator("input[name='username']"))
    form.locator("input[name='username']").fill(username)
    form.locator("input[name='password']").fill(password)
    form.locator("button[type='submit'], input[type='submit']").first.click()
    try:
        page.wait_for_url(lambda url: "/login/" not in url, timeout=TIMEOUT_MS)
    except Exception as error:
        raise AssertionError(f"logging in as {username!r} did not leave the login page ({page.url})") from error
