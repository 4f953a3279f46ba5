"""Real-browser tests: Debian's Chromium driven by Playwright (async API), checked with axe-core.

A pytest plugin, loaded for every test tree by the root ``conftest.py`` (``pytest_plugins``), so
``bank_simulator/tests/browser`` and ``payment_gateway/tests/browser`` share it:

- ``browser`` (session): one headless Chromium for the whole run. It is Debian's
  ``/usr/bin/chromium`` (``apt-get install chromium``), never Playwright's own download;
  ``CHROMIUM_PATH`` points elsewhere. Without it the tests skip and say why; under ``CI=true``
  they fail instead.
- ``browser_context`` / ``page`` (per test): a fresh context (no cookies, no cache) and a page.
  A test wanting another viewport opens its own: ``await browser.new_context(viewport=...)``.
- ``assert_accessible(page)``: axe-core over the page; fails on any ``serious`` or
  ``critical`` violation, naming each rule and element.

The fixtures live on one event loop for the session (Playwright's objects are bound to the loop
that made them), so a browser test module says ``pytestmark = BROWSER_TESTS``: the ``browser``
marker and pytest-asyncio's session loop. A test that forgets it fails saying so. (The sync API
is no way out: it leaves its loop marked as running in the main thread, which breaks every
async test run after it.)
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Iterable
from typing import Any, NoReturn

import pytest
import pytest_asyncio
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Browser, BrowserContext, Page, async_playwright
from playwright.async_api import Error as PlaywrightError

DEFAULT_CHROMIUM = "/usr/bin/chromium"
IN_CI = os.environ.get("CI", "").lower() == "true"
INSTALL_HINT = "install Debian's Chromium (apt-get install -y --no-install-recommends chromium)"
BLOCKING_IMPACTS = ("serious", "critical")

BROWSER_TESTS = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]
"""``pytestmark = BROWSER_TESTS`` in every browser test module."""


def chromium_path() -> str:
    """``CHROMIUM_PATH`` if set, else Debian's ``/usr/bin/chromium``."""
    return os.environ.get("CHROMIUM_PATH") or DEFAULT_CHROMIUM


def _unavailable(message: str) -> NoReturn:
    if IN_CI:
        pytest.fail(message)  # CI must run the browser tests, never skip them
    pytest.skip(message)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Refuse a test using the browser off the session loop, instead of a riddle of futures
    "attached to a different loop"."""
    if "browser" not in getattr(item, "fixturenames", ()):
        return
    marker = item.get_closest_marker("asyncio")
    if marker is None or marker.kwargs.get("loop_scope") != "session":
        pytest.fail(
            f"{item.nodeid} uses the browser but does not run on the session loop: "
            "put `pytestmark = BROWSER_TESTS` (from browser_testing) in its module",
            pytrace=False,
        )


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    """One headless Chromium for the session (``CHROMIUM_PATH``, else /usr/bin/chromium)."""
    path = chromium_path()
    if shutil.which(path) is None:
        _unavailable(f"Chromium not found at {path} (set CHROMIUM_PATH, or {INSTALL_HINT})")
    async with async_playwright() as playwright:
        try:
            launched = await playwright.chromium.launch(executable_path=path, headless=True)
        except PlaywrightError as exc:
            _unavailable(f"Chromium at {path} did not start: {exc}")
        try:
            yield launched
        finally:
            await launched.close()


@pytest_asyncio.fixture(loop_scope="session")
async def browser_context(browser: Browser) -> AsyncIterator[BrowserContext]:
    """A fresh context per test: no cookies, storage or cache from another test."""
    context = await browser.new_context()
    try:
        yield context
    finally:
        await context.close()


@pytest_asyncio.fixture(loop_scope="session")
async def page(browser_context: BrowserContext) -> Page:
    """A page in the test's own context."""
    return await browser_context.new_page()


def blocking_violations(
    violations: Iterable[dict[str, Any]], impacts: Iterable[str] = BLOCKING_IMPACTS
) -> list[str]:
    """One line per violation of these impacts: rule, impact, help and the elements."""
    wanted = set(impacts)
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at "
        + ", ".join(" ".join(node["target"]) for node in v["nodes"])
        for v in violations
        if v.get("impact") in wanted
    ]


async def assert_accessible(page: Page, impacts: Iterable[str] = BLOCKING_IMPACTS) -> None:
    """Run axe-core on the page as it is now; fail on any violation of these impacts."""
    results = await Axe().run(page)
    violations: list[dict[str, Any]] = results.response["violations"]
    found = blocking_violations(violations, impacts)
    assert not found, f"axe-core on {page.url}:\n" + "\n".join(found)
