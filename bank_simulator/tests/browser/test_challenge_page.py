"""The 3-D Secure challenge page in a real browser (Chromium), against the simulator as a process:
each way of answering, by mouse and by keyboard, on a phone-sized screen, its accessibility and
its headers, and a second answer from a stale tab. Each journey checks what the simulator
recorded (its API), not only where the browser ended up."""

from __future__ import annotations

from typing import Any

import pytest
from browser_testing import BROWSER_TESTS, assert_accessible
from playwright.async_api import Browser, Page, Response

from .conftest import Challenge, Simulator

pytestmark = BROWSER_TESTS


async def open_challenge(page: Page, challenge: Challenge) -> Response:
    response = await page.goto(challenge.url)
    assert response is not None
    assert response.status == 200
    await page.get_by_role("heading", name="Your bank wants to confirm it's you").wait_for()
    return response


async def assert_back_at_the_shop(page: Page, simulator: Simulator, challenge: Challenge) -> None:
    """The browser followed the 303 to the return URL, unchanged, exactly once."""
    await page.wait_for_url(challenge.return_url)
    await page.get_by_role("heading", name="Back at the shop").wait_for()
    assert simulator.shop.visits_of(challenge.reference) == [
        challenge.return_url.removeprefix(simulator.shop.origin)
    ]


async def test_the_right_code_authenticates(page: Page, simulator: Simulator) -> None:
    challenge = await simulator.start_challenge()
    await open_challenge(page, challenge)
    await page.get_by_label("One-time code").fill("1234")
    await page.get_by_role("button", name="Submit").click()

    await assert_back_at_the_shop(page, simulator, challenge)
    recorded = await simulator.authentication(challenge.reference)
    assert (recorded["status"], recorded["failure_reason"]) == ("authenticated", None)
    assert recorded["eci"] is not None


@pytest.mark.parametrize(
    ("code", "button", "reason"),
    [("4321", "Submit", "wrong_code"), ("", "Cancel", "canceled")],
)
async def test_a_wrong_code_or_cancel_fails(
    page: Page, simulator: Simulator, code: str, button: str, reason: str
) -> None:
    challenge = await simulator.start_challenge()
    await open_challenge(page, challenge)
    await page.get_by_label("One-time code").fill(code)  # Cancel needs no code
    await page.get_by_role("button", name=button).click()

    await assert_back_at_the_shop(page, simulator, challenge)
    recorded = await simulator.authentication(challenge.reference)
    assert (recorded["status"], recorded["failure_reason"]) == ("failed", reason)
    assert recorded["eci"] is None


async def test_submit_needs_a_code(page: Page, simulator: Simulator) -> None:
    challenge = await simulator.start_challenge()
    await open_challenge(page, challenge)
    await page.get_by_role("button", name="Submit").click()  # the field is required

    assert page.url == challenge.url
    assert await page.evaluate("document.activeElement.id") == "code"
    assert simulator.shop.visits_of(challenge.reference) == []
    assert (await simulator.authentication(challenge.reference))["status"] == "challenge_required"


async def test_the_keyboard_alone_answers_it(page: Page, simulator: Simulator) -> None:
    challenge = await simulator.start_challenge()
    await open_challenge(page, challenge)

    await page.keyboard.press("Tab")  # the code field is the first stop
    focused = await page.evaluate(
        """() => {
            const el = document.activeElement, style = getComputedStyle(el);
            return [el.id, style.outlineStyle, style.outlineWidth];
        }"""
    )
    assert focused == ["code", "solid", "3px"]  # and the focus can be seen
    await page.keyboard.type("1234")
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.textContent.trim()") == "Submit"
    await page.keyboard.press("Shift+Tab")
    await page.keyboard.press("Enter")  # Enter in the field submits the form

    await assert_back_at_the_shop(page, simulator, challenge)
    assert (await simulator.authentication(challenge.reference))["status"] == "authenticated"


async def test_a_phone_sized_screen_needs_no_sideways_scrolling(
    browser: Browser, simulator: Simulator
) -> None:
    context = await browser.new_context(
        viewport={"width": 375, "height": 667}, is_mobile=True, has_touch=True
    )
    try:
        page = await context.new_page()
        challenge = await simulator.start_challenge(amount=999_999_999, currency="EUR")
        await open_challenge(page, challenge)

        assert await page.evaluate("document.scrollingElement.scrollWidth") <= 375
        for name in ("Submit", "Cancel"):
            box = await page.get_by_role("button", name=name).bounding_box()
            assert box is not None
            assert box["x"] >= 0
            assert box["x"] + box["width"] <= 375
            assert box["height"] >= 44  # a finger-sized target
        field = await page.get_by_label("One-time code").bounding_box()
        assert field is not None
        assert field["x"] + field["width"] <= 375
        await page.get_by_label("One-time code").tap()
        await page.keyboard.type("1234")
        await page.get_by_role("button", name="Submit").tap()

        await assert_back_at_the_shop(page, simulator, challenge)
        assert (await simulator.authentication(challenge.reference))["status"] == "authenticated"
    finally:
        await context.close()


async def test_each_page_is_accessible(page: Page, simulator: Simulator) -> None:
    challenge = await simulator.start_challenge()
    await open_challenge(page, challenge)
    await assert_accessible(page)

    await page.get_by_label("One-time code").fill("4321")
    await page.get_by_role("button", name="Submit").click()
    await assert_back_at_the_shop(page, simulator, challenge)

    # Coming back to an answered challenge shows that it is complete.
    answered = await page.goto(challenge.url)
    assert answered is not None
    assert answered.status == 200
    await page.get_by_role("heading", name="This check is already complete").wait_for()
    await assert_accessible(page)

    missing = await page.goto(challenge.url.rsplit("/", 1)[0] + "/no-such-challenge")
    assert missing is not None
    assert missing.status == 404
    await assert_accessible(page)


async def test_the_page_is_sent_with_a_strict_policy_and_renders_under_it(
    page: Page, simulator: Simulator
) -> None:
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    challenge = await simulator.start_challenge()
    response = await open_challenge(page, challenge)

    headers = await response.all_headers()
    policy = parse_policy(headers["content-security-policy"])
    assert policy["default-src"] == ["'self'"]
    assert policy["script-src"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["base-uri"] == ["'none'"]
    # Forms post here, and the answer's redirect goes to the shop: nowhere else.
    assert policy["form-action"] == ["'self'", simulator.shop.origin]
    [self_style, nonce] = policy["style-src"]
    assert self_style == "'self'"
    assert nonce.startswith("'nonce-")
    assert headers["cache-control"] == "no-store"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    # The inline stylesheet carries the nonce, so Chromium applies it and reports nothing.
    background = await page.evaluate("getComputedStyle(document.querySelector('main')).background")
    assert "rgb(255, 255, 255)" in background
    assert problems == []

    # Under that policy the form's redirect to the shop's origin is allowed.
    await page.get_by_label("One-time code").fill("1234")
    await page.get_by_role("button", name="Submit").click()
    await assert_back_at_the_shop(page, simulator, challenge)
    assert problems == []


def parse_policy(header: str) -> dict[str, list[str]]:
    directives = [d.split() for d in header.split(";")]
    return {d[0]: d[1:] for d in directives if d}


async def test_a_second_answer_from_a_stale_tab_changes_nothing(
    page: Page, simulator: Simulator
) -> None:
    challenge = await simulator.start_challenge()
    stale = await page.context.new_page()
    await open_challenge(stale, challenge)  # the form, token included, still on screen
    await open_challenge(page, challenge)
    await page.get_by_label("One-time code").fill("1234")
    await page.get_by_role("button", name="Submit").click()
    await assert_back_at_the_shop(page, simulator, challenge)
    first: dict[str, Any] = await simulator.authentication(challenge.reference)
    assert first["status"] == "authenticated"

    await stale.get_by_label("One-time code").fill("0000")
    async with stale.expect_response(challenge.url) as answer:
        await stale.get_by_role("button", name="Submit").click()
    assert (await answer.value).status == 409
    await stale.get_by_role("heading", name="This check is already complete").wait_for()
    assert await stale.get_by_text("You already confirmed it's you").is_visible()
    assert await stale.get_by_role("link", name="Back to the shop").get_attribute("href") == (
        challenge.return_url
    )

    assert await simulator.authentication(challenge.reference) == first
    assert len(simulator.shop.visits_of(challenge.reference)) == 1  # not sent back again
