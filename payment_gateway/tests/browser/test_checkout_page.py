"""The hosted payment page in a real browser (Chromium) against the gateway and the bank
simulator as processes: paying, a decline then another card, field errors, cancelling, an
expired page, a double click, keyboard only, a phone-sized screen, and axe-core on every state.
Each journey checks what the gateway's API and the bank simulator recorded, not only where the
browser ended up."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from browser_testing import BROWSER_TESTS, assert_accessible
from gateway_pages import assert_page_headers
from playwright.async_api import Browser, Page

from .conftest import Stack, answer_challenge

pytestmark = BROWSER_TESTS

SUCCEEDS, DECLINED = "4242424242424242", "4000000000000002"
SCREENSHOT = Path(__file__).resolve().parents[3] / "docs" / "checkout.png"


async def open_page(page: Page, session: dict[str, Any]) -> None:
    response = await page.goto(session["url"])
    assert response is not None
    assert response.status == 200
    await page.get_by_role("heading", name="€42.50").wait_for()


async def fill_card(page: Page, number: str, expiry: str = "12 / 34") -> None:
    await page.get_by_label("Card number").fill(number)
    await page.get_by_label("Expiry date").fill(expiry)
    await page.get_by_label("Security code").fill("123")
    await page.get_by_label("Name on card").fill("Ada Lovelace")


async def assert_paid(stack: Stack, page: Page, session: dict[str, Any]) -> dict[str, Any]:
    """The browser is at success_url with session_id; session, payment and bank agree."""
    await page.get_by_role("heading", name="Back at the shop").wait_for()
    query = parse_qs(urlsplit(page.url).query)
    assert query["session_id"] == [session["id"]]
    assert len(stack.visits("/thanks", session)) == 1
    settled = await stack.session(session["id"])
    assert (settled["status"], settled["payment_status"]) == ("complete", "paid")
    payment = (await stack.payments(session["reference"]))[0]
    assert (payment["id"], payment["status"]) == (settled["payment_id"], "succeeded")
    deposit = await stack.deposit(payment["id"])
    assert (deposit["status"], deposit["code"], deposit["captured_amount"]) == (
        "succeeded",
        "0",
        4250,
    )
    return payment


async def test_paying_with_a_card_lands_on_the_success_url(page: Page, stack: Stack) -> None:
    session = await stack.create_session()
    await open_page(page, session)
    await assert_accessible(page)
    await page.get_by_text("merchant_one").wait_for()

    await fill_card(page, SUCCEEDS)
    assert await page.get_by_text("Card: Visa").is_visible()  # the script shows the brand
    assert await page.get_by_label("Card number").input_value() == "4242 4242 4242 4242"
    await page.get_by_role("button", name="Pay €42.50").click()

    await assert_paid(stack, page, session)
    # Back on the page: it says the payment is complete, and takes no card.
    await page.goto(session["url"])
    await page.get_by_role("heading", name="Payment complete").wait_for()
    await assert_accessible(page)


async def test_a_declined_card_then_another_one(page: Page, stack: Stack) -> None:
    session = await stack.create_session()
    await open_page(page, session)
    await fill_card(page, DECLINED)
    await page.get_by_role("button", name="Pay €42.50").click()

    alert = page.get_by_role("alert")
    await alert.wait_for()
    assert "insufficient funds" in await alert.inner_text()
    assert "4 more tries left" in await alert.inner_text()
    assert DECLINED not in await page.content()
    assert await page.get_by_label("Card number").input_value() == ""
    await assert_accessible(page)
    declined = (await stack.payments(session["reference"]))[0]
    assert (declined["status"], declined["decline_reason"]) == ("failed", "insufficient_funds")
    assert (await stack.deposit(declined["id"]))["status"] == "failed"

    await fill_card(page, SUCCEEDS)
    await page.get_by_role("button", name="Pay €42.50").click()

    paid = await assert_paid(stack, page, session)
    assert [p["id"] for p in await stack.payments(session["reference"])] == [
        paid["id"],
        declined["id"],
    ]


async def test_five_declines_close_the_page(page: Page, stack: Stack) -> None:
    session = await stack.create_session()
    await open_page(page, session)
    deposits = stack.deposits_made()
    for left in ("4 more tries", "3 more tries", "2 more tries", "1 more try", None):
        await fill_card(page, DECLINED)
        await page.get_by_role("button", name="Pay €42.50").click()
        if left is not None:
            await page.get_by_role("alert").filter(has_text=f"({left} left)").wait_for()

    await page.get_by_role("heading", name="This payment page is closed").wait_for()
    assert "42.50" not in await page.content()
    await assert_accessible(page)
    assert (await stack.session(session["id"]))["status"] == "expired"
    declined = await stack.payments(session["reference"])
    assert [p["status"] for p in declined] == ["failed"] * 5
    assert stack.deposits_made() == deposits + 5
    for payment in declined:
        assert (await stack.deposit(payment["id"]))["status"] == "failed"
    # The page is gone: a sixth card cannot even be typed in.
    await page.goto(session["url"])
    await page.get_by_role("heading", name="This payment page is not available").wait_for()


async def test_error_pages_are_accessible(page: Page, stack: Stack) -> None:
    """The refusals a browser can meet on a post (403 without the page's CSRF token, 415 not a
    form, 413 too large) carry the page headers and pass axe-core; nothing reaches the bank."""
    session = await stack.create_session()
    deposits = stack.deposits_made()
    async with httpx.AsyncClient(timeout=10) as client:
        refusals = {
            403: await client.post(session["url"], data={"card_number": SUCCEEDS}),
            415: await client.post(session["url"], json={"card_number": SUCCEEDS}),
            # Over the form's 4 KiB, under the API's 64 KiB (whose 413 is problem+json).
            413: await client.post(session["url"], data={"card_name": "x" * 10_000}),
        }
    for status, response in refusals.items():
        assert response.status_code == status
        assert_page_headers(response)
        await page.set_content(response.text)
        await page.get_by_role("heading", name="This form cannot be accepted").wait_for()
        await assert_accessible(page)
    assert await stack.payments(session["reference"]) == []
    assert stack.deposits_made() == deposits


async def test_field_errors_are_shown_by_their_fields(page: Page, stack: Stack) -> None:
    session = await stack.create_session()
    await open_page(page, session)
    await fill_card(page, "4242424242424241", expiry="13 / 30")
    await page.get_by_role("button", name="Pay €42.50").click()

    number = page.get_by_label("Card number")
    await page.get_by_text("Enter a valid card number").wait_for()
    assert await number.get_attribute("aria-invalid") == "true"
    assert await number.evaluate("element => element === document.activeElement")
    assert await page.get_by_text("Enter the expiry date as MM / YY").is_visible()
    assert "4242424242424241" not in await page.content()
    await assert_accessible(page)
    assert await stack.payments(session["reference"]) == []


async def test_the_cancel_link_goes_back_to_the_cancel_url(page: Page, stack: Stack) -> None:
    session = await stack.create_session()
    deposits = stack.deposits_made()
    await open_page(page, session)
    await page.get_by_role("link", name="Cancel and return to the shop").click()

    await page.get_by_role("heading", name="Back at the shop").wait_for()
    assert len(stack.visits("/cart", session)) == 1
    assert (await stack.session(session["id"]))["status"] == "open"
    assert await stack.payments(session["reference"]) == []
    assert stack.deposits_made() == deposits  # the bank was never asked


async def test_an_expired_session_shows_a_page_that_reveals_nothing(
    page: Page, stack: Stack
) -> None:
    session = await stack.create_session()
    await open_page(page, session)
    token = await page.locator("input[name=csrf_token]").get_attribute("value")
    await stack.expire(session["id"])
    deposits = stack.deposits_made()

    response = await page.goto(session["url"])

    assert response is not None
    assert response.status == 404
    await page.get_by_role("heading", name="This payment page is not available").wait_for()
    content = await page.content()
    assert "42.50" not in content
    assert "merchant_one" not in content
    await assert_accessible(page)
    # A card posted with the page's own token, from a tab opened before it expired, reaches
    # neither the API nor the bank.
    assert token is not None
    refused = await page.request.post(
        session["url"], form={"csrf_token": token, "card_number": SUCCEEDS, "attempt": "0"}
    )
    assert refused.status == 404
    assert await stack.payments(session["reference"]) == []
    assert stack.deposits_made() == deposits


async def test_a_double_click_on_pay_makes_one_payment(page: Page, stack: Stack) -> None:
    session = await stack.create_session()
    await open_page(page, session)
    await fill_card(page, SUCCEEDS)
    deposits = stack.deposits_made()
    await page.get_by_role("button", name="Pay €42.50").dblclick()

    payment = await assert_paid(stack, page, session)
    assert [p["id"] for p in await stack.payments(session["reference"])] == [payment["id"]]
    assert stack.deposits_made() == deposits + 1  # one deposit at the bank, too


async def test_keyboard_only(page: Page, stack: Stack) -> None:
    session = await stack.create_session()
    await open_page(page, session)
    focused = []
    for keys in (SUCCEEDS, "1234", "123", "Ada Lovelace"):
        await page.keyboard.press("Tab")
        focused.append(await page.evaluate("document.activeElement.id"))
        await page.keyboard.type(keys)
    await page.keyboard.press("Tab")
    focused.append(await page.evaluate("document.activeElement.id"))
    assert focused == ["card_number", "card_expiry", "card_cvc", "card_name", "pay"]
    await page.keyboard.press("Enter")

    await assert_paid(stack, page, session)


async def test_a_phone_sized_screen(browser: Browser, stack: Stack) -> None:
    context = await browser.new_context(viewport={"width": 375, "height": 740})
    try:
        page = await context.new_page()
        session = await stack.create_session()
        await open_page(page, session)
        await fill_card(page, SUCCEEDS)
        # Nothing wider than the screen, and the button fits it.
        assert await page.evaluate("document.documentElement.scrollWidth") <= 375
        box = await page.get_by_role("button", name="Pay €42.50").bounding_box()
        assert box is not None
        assert box["x"] >= 0
        assert box["x"] + box["width"] <= 375
        await assert_accessible(page)
        await page.screenshot(path=str(SCREENSHOT), full_page=True)  # README's picture
        await page.get_by_role("button", name="Pay €42.50").click()
        await assert_paid(stack, page, session)
    finally:
        await context.close()


async def test_a_pending_payment_shows_a_page_that_looks_again(page: Page, stack: Stack) -> None:
    session = await stack.create_session()
    await open_page(page, session)
    await fill_card(page, "4000000000009995")  # the bank answers "pending", settles later
    await page.get_by_role("button", name="Pay €42.50").click()

    await page.get_by_role("heading", name="Your payment is being processed").wait_for()
    await assert_accessible(page)
    # The page refreshes itself; once the reconciler has settled the payment, it is complete.
    await page.get_by_role("heading", name="Payment complete").wait_for(timeout=20_000)
    settled = await stack.session(session["id"])
    assert (settled["status"], settled["payment_status"]) == ("complete", "paid")
    assert (await stack.deposit(settled["payment_id"]))["status"] == "succeeded"


CHALLENGE, FRICTIONLESS = "4000000000003220", "4000000000003055"


async def test_a_3_d_secure_challenge_then_back_to_the_shop(page: Page, stack: Stack) -> None:
    session = await stack.create_session()
    await open_page(page, session)
    await fill_card(page, CHALLENGE)
    await page.get_by_role("button", name="Pay €42.50").click()

    await page.wait_for_url(f"{stack.bank.url}/3ds/challenge/**")
    waiting = (await stack.payments(session["reference"]))[0]
    assert waiting["status"] == "requires_action"
    assert (await stack.authentication(waiting["id"]))["status"] == "challenge_required"
    assert not await stack.has_deposit(waiting["id"])
    # The shopper opens the payment page again before answering: it sends them back.
    await page.goto(session["url"])
    await page.get_by_role("heading", name="Confirm the payment with your bank").wait_for()
    await assert_accessible(page)
    await page.get_by_role("link", name="Continue to your bank").click()
    await answer_challenge(page, "1234")

    payment = await assert_paid(stack, page, session)
    assert payment["three_d_secure"]["result"] == "authenticated"
    assert (await stack.authentication(payment["id"]))["status"] == "authenticated"


async def test_a_wrong_challenge_code_then_another_card(page: Page, stack: Stack) -> None:
    session = await stack.create_session()
    await open_page(page, session)
    await fill_card(page, CHALLENGE)
    await page.get_by_role("button", name="Pay €42.50").click()
    await answer_challenge(page, "0000")

    alert = page.get_by_role("alert")
    await alert.wait_for()
    assert "Your bank could not confirm it was you" in await alert.inner_text()
    await assert_accessible(page)
    failed = (await stack.payments(session["reference"]))[0]
    assert (failed["status"], failed["decline_reason"]) == ("failed", "authentication_failed")
    assert (await stack.session(session["id"]))["status"] == "open"
    # The bank failed the authentication, and was never asked for the money.
    authentication = await stack.authentication(failed["id"])
    assert (authentication["status"], authentication["failure_reason"]) == (
        "failed",
        "wrong_code",
    )
    assert not await stack.has_deposit(failed["id"])

    await fill_card(page, SUCCEEDS)
    await page.get_by_role("button", name="Pay €42.50").click()
    await assert_paid(stack, page, session)


async def test_a_frictionless_card_needs_no_challenge(page: Page, stack: Stack) -> None:
    session = await stack.create_session()
    await open_page(page, session)
    await fill_card(page, FRICTIONLESS)
    await page.get_by_role("button", name="Pay €42.50").click()

    payment = await assert_paid(stack, page, session)
    assert payment["three_d_secure"]["authentication_flow"] == "frictionless"
    authentication = await stack.authentication(payment["id"])
    assert (authentication["status"], authentication["flow"]) == ("authenticated", "frictionless")
