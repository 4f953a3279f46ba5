"""The hosted payment page in-process, on real SQLite and real MariaDB: what a browser gets."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from fakes import FakeBank
from gateway_pages import assert_page_headers, goes_on_to
from payment_gateway.domain.bank import BankAnswer, BankFault
from payment_gateway.domain.payment import PaymentRequest

from .checkout_helpers import (
    DECLINED,
    SUCCEEDS,
    alerts,
    card_form,
    create_session,
    events_of,
    page_path,
    pay,
    payments_of,
    read_session,
)
from .conftest import Gateway, gateway_settings, running_gateway


async def test_the_page_shows_the_merchant_amount_and_an_accessible_form(gateway: Gateway) -> None:
    created = await create_session(gateway)

    page = await gateway.client.get(page_path(created["id"]))

    assert page.status_code == 200
    nonce = assert_page_headers(page)
    assert "merchant_one" in page.text
    assert "€19.99" in page.text  # Babel, for the currency
    assert "Order order-77" in page.text
    for field, autocomplete in (
        ("card_number", "cc-number"),
        ("card_expiry", "cc-exp"),
        ("card_cvc", "cc-csc"),
        ("card_name", "cc-name"),
    ):
        assert f'<label for="{field}">' in page.text
        assert re.search(rf'id="{field}"[^>]*autocomplete="{autocomplete}"', page.text, re.S)
    assert 'href="https://shop.example/cart"' in page.text  # the cancel link
    policy = page.headers["content-security-policy"]
    assert "form-action 'self' http://127.0.0.1:8081 https://shop.example;" in policy
    again = await gateway.client.get(page_path(created["id"]))
    assert assert_page_headers(again) != nonce  # a nonce per response


async def test_paying_redirects_to_success_url_with_the_session_id(gateway: Gateway) -> None:
    created = await create_session(gateway)

    answer = await pay(gateway, created["id"])

    assert answer.status_code == 303
    location = urlsplit(answer.headers["location"])
    assert (location.scheme, location.netloc, location.path) == ("https", "shop.example", "/thanks")
    assert parse_qs(location.query) == {"order": ["77"], "session_id": [created["id"]]}
    session = await read_session(gateway, created["id"])
    assert (session["status"], session["payment_status"]) == ("complete", "paid")
    assert [deposit[1].amount for deposit in gateway.bank.deposits] == [1999]
    told = await events_of(gateway, created["id"])
    assert [event["type"] for event in told] == ["checkout.session.completed"]
    assert told[0]["data"]["object"] == session
    # The page of a complete session says so, and takes no card.
    page = await gateway.client.get(page_path(created["id"]))
    assert "Payment complete" in page.text
    assert 'name="card_number"' not in page.text
    assert_page_headers(page)


async def test_a_decline_shows_the_form_again_for_another_card(gateway: Gateway) -> None:
    created = await create_session(gateway)

    declined = await pay(gateway, created["id"], DECLINED)

    assert declined.status_code == 200
    assert_page_headers(declined)
    assert alerts(declined.text) == [
        "Your card was declined: insufficient funds. Try again or use another card "
        "(4 more tries left)."
    ]
    assert DECLINED not in declined.text
    retried = await gateway.client.post(
        page_path(created["id"]), data=card_form(declined.text, SUCCEEDS)
    )
    assert retried.status_code == 303
    assert sorted(await payments_of(gateway, created["id"])) == ["failed", "succeeded"]


async def test_five_declines_expire_the_session(gateway: Gateway) -> None:
    created = await create_session(gateway)
    page = await gateway.client.get(page_path(created["id"]))
    for _ in range(5):
        page = await gateway.client.post(
            page_path(created["id"]), data=card_form(page.text, DECLINED)
        )
    assert page.status_code == 200
    assert "This payment page is closed" in page.text
    assert "€19.99" not in page.text

    session = await read_session(gateway, created["id"])
    assert (session["status"], session["payment_status"]) == ("expired", "unpaid")
    assert len(gateway.bank.deposits) == 5
    told = await events_of(gateway, created["id"])
    assert [event["type"] for event in told] == ["checkout.session.expired"]
    # No sixth card: the page is gone, and the bank is not asked again.
    later = await gateway.client.get(page_path(created["id"]))
    assert later.status_code == 404
    assert len(gateway.bank.deposits) == 5


async def test_a_post_without_the_right_csrf_token_is_403(gateway: Gateway) -> None:
    created, other = await create_session(gateway), await create_session(gateway)
    page = await gateway.client.get(page_path(created["id"]))
    other_page = await gateway.client.get(page_path(other["id"]))

    missing = await gateway.client.post(
        page_path(created["id"]),
        data={k: v for k, v in card_form(page.text).items() if k != "csrf_token"},
    )
    wrong = await gateway.client.post(
        page_path(created["id"]), data=card_form(page.text, csrf_token="x")
    )
    # Another session's token is not this one's.
    foreign = await gateway.client.post(
        page_path(created["id"]),
        data=card_form(page.text, csrf_token=card_form(other_page.text)["csrf_token"]),
    )

    for response in (missing, wrong, foreign):
        assert response.status_code == 403
        assert_page_headers(response)
    assert gateway.bank.deposits == []


async def test_a_form_post_must_be_a_form(gateway: Gateway) -> None:
    created = await create_session(gateway)
    response = await gateway.client.post(page_path(created["id"]), json={"card_number": SUCCEEDS})
    assert response.status_code == 415
    assert gateway.bank.deposits == []


async def test_a_form_too_long_for_the_page_gets_a_page_not_json(gateway: Gateway) -> None:
    created = await create_session(gateway)
    path = page_path(created["id"])
    form = card_form((await gateway.client.get(path)).text)

    async def streamed() -> AsyncIterator[bytes]:  # no Content-Length: counted as it comes
        yield b"card_name="
        for _ in range(10):
            yield b"A" * 8192

    # Over the form's own limit, then over every request's (64 KiB), declared and streamed.
    answers = [
        await gateway.client.post(path, data={**form, "card_name": "A" * padding})
        for padding in (5_000, 70_000)
    ]
    answers.append(
        await gateway.client.post(
            path,
            content=streamed(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    )

    for answer in answers:
        assert answer.status_code == 413
        assert answer.headers["content-type"].startswith("text/html")
        assert "This form cannot be accepted" in answer.text
        assert_page_headers(answer)
    assert gateway.bank.deposits == []
    assert (await read_session(gateway, created["id"]))["status"] == "open"


async def test_field_errors_show_by_their_field_and_never_echo_the_card(gateway: Gateway) -> None:
    created = await create_session(gateway)
    page = await gateway.client.get(page_path(created["id"]))

    response = await gateway.client.post(
        page_path(created["id"]),
        data=card_form(page.text, "4242424242424241", card_expiry="13/30", card_cvc="1"),
    )

    assert response.status_code == 422
    assert_page_headers(response)
    for field in ("card_number", "card_expiry", "card_cvc"):
        assert re.search(rf'id="{field}"[^>]*aria-invalid="true"', response.text, re.S)
        assert f'id="{field}-error"' in response.text
    assert "4242424242424241" not in response.text
    assert 'value="Ada Lovelace"' in response.text  # the name is kept, the card is not
    assert gateway.bank.deposits == []


async def test_the_pan_is_in_no_page_redirect_or_log(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    created = await create_session(gateway)
    page = await gateway.client.get(page_path(created["id"]))
    spaced = "4000 0000 0000 0002"
    declined = await gateway.client.post(
        page_path(created["id"]), data=card_form(page.text, spaced)
    )
    invalid = await gateway.client.post(
        page_path(created["id"]), data=card_form(declined.text, SUCCEEDS, card_expiry="00/00")
    )
    paid = await gateway.client.post(
        page_path(created["id"]), data=card_form(declined.text, SUCCEEDS)
    )

    for response in (declined, invalid, paid):
        shown = response.text + str(response.headers)
        assert DECLINED not in shown
        assert spaced not in shown
        assert SUCCEEDS not in shown
    assert paid.status_code == 303
    logged = caplog.text + " ".join(str(record.__dict__) for record in caplog.records)
    for pan in (DECLINED, SUCCEEDS, spaced):
        assert pan not in logged


class SlowBank(FakeBank):
    """Takes its time over a deposit, so that a second post arrives while the first waits."""

    async def deposit(
        self, payment_id: str, request: PaymentRequest, authentication_id: str | None = None
    ) -> BankAnswer | BankFault:
        await asyncio.sleep(0.3)
        return await super().deposit(payment_id, request, authentication_id)


@pytest.fixture
async def slow_gateway(database_url: str, tmp_path: Path) -> AsyncIterator[Gateway]:
    async with running_gateway(gateway_settings(database_url, tmp_path), SlowBank()) as gateway:
        yield gateway


@pytest.mark.parametrize("number", [SUCCEEDS, DECLINED])
async def test_a_double_submit_makes_one_payment(slow_gateway: Gateway, number: str) -> None:
    gateway = slow_gateway
    created = await create_session(gateway)
    page = await gateway.client.get(page_path(created["id"]))
    form = card_form(page.text, number)

    first, second = await asyncio.gather(
        gateway.client.post(page_path(created["id"]), data=form),
        gateway.client.post(page_path(created["id"]), data=form),
    )

    assert len(gateway.bank.deposits) == 1
    assert len(await payments_of(gateway, created["id"])) == 1
    session = await read_session(gateway, created["id"])
    if number == SUCCEEDS:
        assert first.status_code == second.status_code == 303
        assert first.headers["location"] == second.headers["location"]
    else:
        assert first.status_code == second.status_code == 200
        assert session["status"] == "open"
        assert "4 more tries left" in first.text
        assert "4 more tries left" in second.text


async def test_guessed_and_expired_sessions_show_the_same_page(gateway: Gateway) -> None:
    created = await create_session(gateway)
    expired = await gateway.client.post(
        f"/api/v1/checkout-sessions/{created['id']}/expire",
        headers={"Authorization": "Bearer first_merchant_mock_token"},
    )
    assert expired.status_code == 200

    gone = await gateway.client.get(page_path(created["id"]))
    guessed = await gateway.client.get(page_path("cs_" + "0" * 36))
    nonsense = await gateway.client.get(page_path("x" * 500))
    posted = await gateway.client.post(page_path("cs_" + "0" * 36), data={"csrf_token": "x"})

    assert gone.status_code == guessed.status_code == nonsense.status_code == 404
    for response in (gone, guessed, nonsense):
        assert_page_headers(response)
        assert "This payment page is not available" in response.text
        assert "merchant_one" not in response.text
        assert "19.99" not in response.text
    assert posted.status_code == 403  # a guessed id has no valid token


async def test_the_page_is_rate_limited_per_client_address(
    database_url: str, tmp_path: Path
) -> None:
    settings = gateway_settings(
        database_url, tmp_path, rate_limit_unauthenticated_per_second=1, rate_limit_per_second=1
    )
    async with running_gateway(settings, FakeBank()) as gateway:
        answers = [await gateway.client.get(page_path("cs_unknown")) for _ in range(4)]
    assert [answer.status_code for answer in answers] == [404, 404, 429, 429]
    assert_page_headers(answers[-1])
    assert int(answers[-1].headers["retry-after"]) >= 1


CHALLENGE, FRICTIONLESS = "4000000000003220", "4000000000003055"


async def test_a_challenge_card_goes_to_the_bank_and_back_to_the_success_url(
    gateway: Gateway,
) -> None:
    created = await create_session(gateway)

    sent = await pay(gateway, created["id"], CHALLENGE)

    assert sent.status_code == 303
    session = await read_session(gateway, created["id"])
    payment_id = session["payment_id"]
    assert sent.headers["location"] == f"https://bank.test/3ds/challenge/{payment_id}"
    assert gateway.bank.return_urls[payment_id] == f"http://127.0.0.1:8080/3ds/return/{payment_id}"
    assert session["status"] == "open"
    assert gateway.bank.deposits == []  # nothing charged before the shopper answers
    waiting = await gateway.client.get(page_path(created["id"]))
    assert "Confirm the payment with your bank" in waiting.text
    assert f'href="https://bank.test/3ds/challenge/{payment_id}"' in waiting.text
    # A return before any answer, or with a forged query, is not believed: back to the bank.
    forged = await gateway.client.get(
        page_path(created["id"]) + "/return", params={"payment_id": "forged", "paid": "yes"}
    )
    assert forged.status_code == 303
    assert forged.headers["location"].startswith("https://bank.test/3ds/challenge/")

    gateway.bank.answer_challenge(payment_id, passed=True)
    back = await gateway.client.get(f"/3ds/return/{payment_id}")  # where the bank sends it
    went_on = goes_on_to(back)
    assert went_on == (
        f"http://127.0.0.1:8080/checkout/{created['id']}/return?payment_id={payment_id}"
    )
    landed = await gateway.client.get(urlsplit(went_on).path)

    assert landed.status_code == 303
    assert landed.headers["location"] == (
        f"https://shop.example/thanks?order=77&session_id={created['id']}"
    )
    session = await read_session(gateway, created["id"])
    assert (session["status"], session["payment_status"]) == ("complete", "paid")
    assert [deposit[0] for deposit in gateway.bank.deposits] == [payment_id]
    told = await events_of(gateway, created["id"])
    assert [event["type"] for event in told] == ["checkout.session.completed"]


async def test_a_failed_challenge_shows_the_form_again(gateway: Gateway) -> None:
    created = await create_session(gateway)
    await pay(gateway, created["id"], CHALLENGE)
    payment_id = (await read_session(gateway, created["id"]))["payment_id"]
    gateway.bank.answer_challenge(payment_id, passed=False)
    await gateway.client.get(f"/3ds/return/{payment_id}")

    landed = await gateway.client.get(page_path(created["id"]) + "/return")

    assert landed.status_code == 200
    assert_page_headers(landed)
    assert alerts(landed.text) == [
        "Your bank could not confirm it was you. Try again or use another card (4 more tries left)."
    ]
    retried = await gateway.client.post(
        page_path(created["id"]), data=card_form(landed.text, SUCCEEDS)
    )
    assert retried.status_code == 303
    assert retried.headers["location"].startswith("https://shop.example/thanks")
    assert sorted(await payments_of(gateway, created["id"])) == ["failed", "succeeded"]


async def test_a_frictionless_card_is_charged_at_once(gateway: Gateway) -> None:
    created = await create_session(gateway)
    answer = await pay(gateway, created["id"], FRICTIONLESS)
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("https://shop.example/thanks")
    payment_id = (await read_session(gateway, created["id"]))["payment_id"]
    assert gateway.bank.deposit_authentications[payment_id] == f"auth-{payment_id}"
