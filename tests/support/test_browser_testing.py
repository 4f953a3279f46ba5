"""The accessibility check itself: it must fail on serious or critical violations, say which,
and let lesser ones through."""

from __future__ import annotations

import pytest
from browser_testing import BROWSER_TESTS, assert_accessible
from playwright.async_api import Page

pytestmark = BROWSER_TESTS

PAGE = """<!doctype html><html lang="en"><head><title>t</title></head>
<body><main><h1>Check</h1>{}</main></body></html>"""


async def test_a_critical_violation_fails_naming_the_rule_and_element(page: Page) -> None:
    await page.set_content(PAGE.format('<img id="logo" src="data:,">'))
    with pytest.raises(AssertionError) as failure:
        await assert_accessible(page)
    assert "image-alt (critical)" in str(failure.value)
    assert "#logo" in str(failure.value)


async def test_a_clean_page_passes_and_moderate_findings_do_not_fail(page: Page) -> None:
    await page.set_content(PAGE.format('<img src="data:," alt="Logo">'))
    await assert_accessible(page)
    # A heading level skipped is "moderate": reported by axe, not blocking by default.
    await page.set_content(PAGE.format("<h4>Skipped levels</h4>"))
    await assert_accessible(page)
    with pytest.raises(AssertionError, match="heading-order"):
        await assert_accessible(page, impacts=("moderate",))
