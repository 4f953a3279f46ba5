"""3-D Secure through the API in a real browser (Chromium): the merchant's own page made the
payment, the shopper answers the bank simulator's challenge and must land back on the
merchant's ``return_url`` with the payment's id, with or without script. Each journey checks
what the gateway's API and the bank recorded."""

from __future__ import annotations

import re
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from browser_testing import BROWSER_TESTS, assert_accessible
from gateway_pages import goes_on_to
from playwright.async_api import Browser, Page

from .conftest import Stack, answer_challenge

pytestmark = BROWSER_TESTS

CHALLENGE = "4000000000003220"


async def challenged(stack: Stack) -> tuple[dict[str, Any], str]:
    """A challenge card's payment through the API, and the path it should come back to."""
    order = uuid.uuid4().hex[:12]
    body: dict[str, object] = {
        "card": {"number": CHALLENGE, "expiry_month": 12, "expiry_year": 2042, "cvv": "123"},
        "amount": 1999,
        "currency": "EUR",
        "reference": f"order-{order}",
        "three_d_secure": {"return_url": f"{stack.shop.origin}/paid?order={order}"},
    }
    payment = await stack.create_payment(body)
    assert payment["status"] == "requires_action"
    assert payment["next_action"]["url"].startswith(f"{stack.bank.url}/3ds/challenge/")
    return payment, f"/paid?order={order}"


async def landed_at_the_shop(stack: Stack, page: Page, path: str, payment_id: str) -> None:
    """The browser is at the shop's return_url, its query kept, with the payment's id."""
    await page.get_by_role("heading", name="Back at the shop").wait_for()
    assert page.url.startswith(f"{stack.shop.origin}{path}&")
    assert parse_qs(urlsplit(page.url).query)["payment_id"] == [payment_id]
    assert [visit for visit in stack.shop.visits if visit.startswith(path)] == [
        f"{path}&payment_id={payment_id}"
    ]


async def test_a_passed_challenge_lands_on_the_merchants_return_url(
    page: Page, stack: Stack
) -> None:
    payment, path = await challenged(stack)

    await page.goto(payment["next_action"]["url"])
    await assert_accessible(page)
    await answer_challenge(page, "1234")

    await landed_at_the_shop(stack, page, path, payment["id"])
    done = await stack.payment(payment["id"])
    assert (done["status"], done["three_d_secure"]["result"]) == ("succeeded", "authenticated")
    assert (await stack.authentication(payment["id"]))["status"] == "authenticated"
    deposit = await stack.deposit(payment["id"])
    assert (deposit["status"], deposit["captured_amount"]) == ("succeeded", 1999)


async def test_a_wrong_code_lands_on_the_return_url_with_the_payment_failed(
    page: Page, stack: Stack
) -> None:
    payment, path = await challenged(stack)

    await page.goto(payment["next_action"]["url"])
    await answer_challenge(page, "0000")

    await landed_at_the_shop(stack, page, path, payment["id"])
    failed = await stack.payment(payment["id"])
    assert (failed["status"], failed["decline_reason"]) == ("failed", "authentication_failed")
    authentication = await stack.authentication(payment["id"])
    assert (authentication["status"], authentication["failure_reason"]) == (
        "failed",
        "wrong_code",
    )
    assert not await stack.has_deposit(payment["id"])


async def test_without_script_the_link_goes_on_to_the_return_url(
    browser: Browser, stack: Stack
) -> None:
    payment, path = await challenged(stack)
    context = await browser.new_context(java_script_enabled=False)
    try:
        page = await context.new_page()
        await page.goto(payment["next_action"]["url"])
        await answer_challenge(page, "1234")

        await page.get_by_role("heading", name="Returning to the shop").wait_for()
        await page.get_by_role("link", name="Continue to the shop").click()

        await landed_at_the_shop(stack, page, path, payment["id"])
    finally:
        await context.close()
    assert (await stack.payment(payment["id"]))["status"] == "succeeded"
    assert (await stack.deposit(payment["id"]))["status"] == "succeeded"


async def test_the_returning_page_is_accessible_and_a_replay_changes_nothing(
    page: Page, stack: Stack
) -> None:
    """axe-core needs script, so the page a browser without script stops at is checked as
    served again: the same return, replayed after the payment succeeded."""
    payment, path = await challenged(stack)
    await page.goto(payment["next_action"]["url"])
    await answer_challenge(page, "1234")
    await landed_at_the_shop(stack, page, path, payment["id"])
    deposits = stack.deposits_made()

    async with httpx.AsyncClient(timeout=10) as client:
        replayed = await client.get(f"{stack.gateway.url}/3ds/return/{payment['id']}")

    assert goes_on_to(replayed) == f"{stack.shop.origin}{path}&payment_id={payment['id']}"
    # What it shows, without the script that would take the browser on at once.
    await page.set_content(re.sub(r"<script\b.*?</script>", "", replayed.text, flags=re.DOTALL))
    await page.get_by_role("heading", name="Returning to the shop").wait_for()
    await assert_accessible(page)
    assert (await stack.payment(payment["id"]))["status"] == "succeeded"
    assert stack.deposits_made() == deposits


async def test_a_return_for_no_waiting_payment_shows_a_page_that_reveals_nothing(
    page: Page, stack: Stack
) -> None:
    deposits = stack.deposits_made()

    response = await page.goto(f"{stack.gateway.url}/3ds/return/pay_guessed")

    assert response is not None
    assert response.status == 404
    await page.get_by_role("heading", name="No payment is waiting here").wait_for()
    await assert_accessible(page)
    assert stack.deposits_made() == deposits
