"""3-D Secure through the API and the shopper's return, on real SQLite and real MariaDB."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fakes import CHALLENGE_CARD, FakeBank
from gateway_pages import assert_page_headers, goes_on_to
from payment_gateway.api.schemas import PaymentOut

from .conftest import (
    MERCHANT_ONE,
    MERCHANT_TWO,
    Gateway,
    gateway_settings,
    payment_body,
    running_gateway,
)

RETURN_URL = "https://shop.example/orders/1234/paid?step=3ds"


def challenge_body(**overrides: object) -> dict[str, object]:
    return payment_body(CHALLENGE_CARD, three_d_secure={"return_url": RETURN_URL}, **overrides)


async def create_challenged(gateway: Gateway) -> dict[str, object]:
    response = await gateway.client.post(
        "/api/v1/payments", json=challenge_body(), headers=MERCHANT_ONE
    )
    assert response.status_code == 201, response.text
    payment: dict[str, object] = response.json()
    return payment


async def test_a_challenge_card_answers_requires_action_with_the_banks_page(
    gateway: Gateway,
) -> None:
    payment = await create_challenged(gateway)

    PaymentOut.model_validate(payment)
    assert payment["status"] == "requires_action"
    assert payment["next_action"] == {
        "type": "redirect_to_url",
        "url": f"https://bank.test/3ds/challenge/{payment['id']}",
    }
    assert payment["three_d_secure"] == {
        "authentication_flow": "challenge",
        "result": None,
        "eci": None,
        "version": "2.2.0",
    }
    read = await gateway.client.get(f"/api/v1/payments/{payment['id']}", headers=MERCHANT_ONE)
    assert read.json() == payment
    assert gateway.bank.deposits == []


async def test_the_shoppers_return_charges_once_and_goes_on_to_the_merchant(
    gateway: Gateway,
) -> None:
    payment = await create_challenged(gateway)
    gateway.bank.answer_challenge(str(payment["id"]), passed=True)

    back = await gateway.client.get(f"/3ds/return/{payment['id']}")
    again = await gateway.client.get(f"/3ds/return/{payment['id']}")  # a reload, a replay

    # A page that goes on by script: a 303 after the bank page's post would be held to that
    # page's CSP form-action, which does not name the merchant's site.
    expected = f"{RETURN_URL}&payment_id={payment['id']}"
    assert goes_on_to(back) == goes_on_to(again) == expected
    read = await gateway.client.get(f"/api/v1/payments/{payment['id']}", headers=MERCHANT_ONE)
    done = read.json()
    assert (done["status"], done["next_action"]) == ("succeeded", None)
    assert done["three_d_secure"] == {
        "authentication_flow": "challenge",
        "result": "authenticated",
        "eci": "05",
        "version": "2.2.0",
    }
    assert [(payment_id, request.cvv) for payment_id, request in gateway.bank.deposits] == [
        (payment["id"], None)
    ]
    events = await gateway.client.get("/api/v1/events", params={"limit": 100}, headers=MERCHANT_ONE)
    types = [
        event["type"]
        for event in events.json()["data"]
        if event["data"]["object"]["id"] == payment["id"]  # MariaDB's are the session's
    ]
    assert types == ["payment.succeeded", "payment.requires_action"]  # newest first


async def test_a_failed_challenge_fails_the_payment(gateway: Gateway) -> None:
    payment = await create_challenged(gateway)
    gateway.bank.answer_challenge(str(payment["id"]), passed=False)

    back = await gateway.client.get(f"/3ds/return/{payment['id']}")

    assert goes_on_to(back) == f"{RETURN_URL}&payment_id={payment['id']}"
    read = await gateway.client.get(f"/api/v1/payments/{payment['id']}", headers=MERCHANT_ONE)
    assert (read.json()["status"], read.json()["decline_reason"]) == (
        "failed",
        "authentication_failed",
    )
    assert gateway.bank.deposits == []


@pytest.mark.parametrize("payment_id", ["00000000-0000-7000-8000-000000000000", "x" * 65])
async def test_a_return_for_no_waiting_payment_reveals_nothing(
    gateway: Gateway, payment_id: str
) -> None:
    response = await gateway.client.get(f"/3ds/return/{payment_id}")

    assert response.status_code == 404
    assert_page_headers(response)
    assert "shop.example" not in response.text


async def test_a_payment_without_3_d_secure_has_no_return(gateway: Gateway) -> None:
    created = await gateway.client.post(
        "/api/v1/payments", json=payment_body(), headers=MERCHANT_ONE
    )

    response = await gateway.client.get(f"/3ds/return/{created.json()['id']}")

    assert response.status_code == 404


async def test_another_merchant_cannot_read_the_waiting_payment(gateway: Gateway) -> None:
    payment = await create_challenged(gateway)

    read = await gateway.client.get(f"/api/v1/payments/{payment['id']}", headers=MERCHANT_TWO)

    assert read.status_code == 404


@pytest.mark.parametrize(
    "return_url", ["javascript:alert(1)", "/relative", "https://user:pw@shop.example/", ""]
)
async def test_a_bad_return_url_is_refused_naming_the_field(
    gateway: Gateway, return_url: str
) -> None:
    response = await gateway.client.post(
        "/api/v1/payments",
        json=payment_body(CHALLENGE_CARD, three_d_secure={"return_url": return_url}),
        headers=MERCHANT_ONE,
    )

    assert response.status_code == 422
    assert [error["field"] for error in response.json()["errors"]] == ["three_d_secure.return_url"]
    assert gateway.bank.authentications == {}


@pytest.fixture
async def hurried_gateway(database_url: str, tmp_path: Path) -> AsyncIterator[Gateway]:
    """A gateway whose challenges expire after half a second."""
    settings = gateway_settings(database_url, tmp_path, challenge_ttl_seconds=0.5)
    async with running_gateway(settings, FakeBank()) as gateway:
        yield gateway


async def test_a_challenge_never_answered_fails_through_the_reconciler(
    hurried_gateway: Gateway,
) -> None:
    payment = await create_challenged(hurried_gateway)
    reconciler = hurried_gateway.app.state.services.reconciler

    await asyncio.sleep(0.6)
    assert await reconciler.expire_challenges() == 1

    read = await hurried_gateway.client.get(
        f"/api/v1/payments/{payment['id']}", headers=MERCHANT_ONE
    )
    assert (read.json()["status"], read.json()["decline_reason"]) == (
        "failed",
        "authentication_expired",
    )
    assert await reconciler.expire_challenges() == 0  # settled once
    assert hurried_gateway.bank.deposits == []
