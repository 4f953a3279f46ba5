"""Checkout sessions through the merchant API, on real SQLite and real MariaDB."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from payment_gateway.api.checkout_schemas import CheckoutSessionOut

from .checkout_helpers import (
    DECLINED,
    PENDING,
    SESSIONS,
    create_session,
    events_of,
    expire_now,
    make_payments_due,
    page_path,
    pay,
    read_session,
    session_body,
)
from .conftest import MERCHANT_ONE, MERCHANT_TWO, Gateway


async def test_a_session_is_created_open_and_read_back(gateway: Gateway) -> None:
    response = await gateway.client.post(SESSIONS, json=session_body(), headers=MERCHANT_ONE)

    assert response.status_code == 201
    created = response.json()
    CheckoutSessionOut.model_validate(created)  # the documented shape
    assert created["id"].startswith("cs_")
    assert response.headers["location"] == f"{SESSIONS}/{created['id']}"
    assert created["url"] == f"http://127.0.0.1:8080/checkout/{created['id']}"
    assert (created["status"], created["payment_status"], created["payment_id"]) == (
        "open",
        "unpaid",
        None,
    )
    assert (created["amount"], created["currency"], created["capture"]) == (1999, "EUR", True)
    lifetime = datetime.fromisoformat(created["expires_at"]) - datetime.fromisoformat(
        created["created_at"]
    )
    assert lifetime == timedelta(hours=1)
    assert await read_session(gateway, created["id"]) == created


async def test_expires_in_seconds_sets_the_expiry(gateway: Gateway) -> None:
    created = await create_session(gateway, expires_in_seconds=86_400, capture=False)
    lifetime = datetime.fromisoformat(created["expires_at"]) - datetime.fromisoformat(
        created["created_at"]
    )
    assert lifetime == timedelta(days=1)
    assert created["capture"] is False


INVALID = [
    (session_body(amount=0), "amount"),
    (session_body(amount="10"), "amount"),
    (session_body(currency="XYZ"), "currency"),
    (session_body(reference="4242 4242 4242 4242"), "reference"),
    (session_body(success_url="shop.example/thanks"), "success_url"),
    (session_body(success_url="javascript:alert(1)"), "success_url"),
    (session_body(cancel_url="ftp://shop.example/cart"), "cancel_url"),
    (session_body(cancel_url="https://user:pw@shop.example/"), "cancel_url"),
    (session_body(cancel_url="https://shop.example/a b"), "cancel_url"),
    (session_body(success_url="https://" + "a" * 2048), "success_url"),
    (session_body(expires_in_seconds=1799), "expires_in_seconds"),
    (session_body(expires_in_seconds=86_401), "expires_in_seconds"),
    ({**session_body(), "surprise": 1}, "surprise"),
    ({k: v for k, v in session_body().items() if k != "success_url"}, "success_url"),
]


@pytest.mark.parametrize(("body", "field"), INVALID)
async def test_invalid_sessions_get_422_naming_the_field(
    gateway: Gateway, body: dict[str, object], field: str
) -> None:
    response = await gateway.client.post(SESSIONS, json=body, headers=MERCHANT_ONE)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert field in [error["field"] for error in response.json()["errors"]]


async def test_http_redirect_urls_are_allowed_in_development(gateway: Gateway) -> None:
    created = await create_session(gateway, success_url="http://localhost:3000/ok")
    assert created["success_url"] == "http://localhost:3000/ok"


async def test_a_session_needs_an_api_key(gateway: Gateway) -> None:
    response = await gateway.client.post(SESSIONS, json=session_body())
    assert response.status_code == 401


async def test_another_merchants_or_a_guessed_session_is_404(gateway: Gateway) -> None:
    created = await create_session(gateway)
    other = await gateway.client.get(f"{SESSIONS}/{created['id']}", headers=MERCHANT_TWO)
    guessed = await gateway.client.get(f"{SESSIONS}/cs_{'0' * 36}", headers=MERCHANT_ONE)
    expire = await gateway.client.post(f"{SESSIONS}/{created['id']}/expire", headers=MERCHANT_TWO)

    assert other.status_code == guessed.status_code == expire.status_code == 404
    assert other.json()["title"] == guessed.json()["title"]
    assert str(created["amount"]) not in other.text
    assert (await read_session(gateway, created["id"]))["status"] == "open"
    too_long = await gateway.client.get(f"{SESSIONS}/{'x' * 65}", headers=MERCHANT_ONE)
    assert too_long.status_code == 422


async def test_expire_closes_an_open_session_once(gateway: Gateway) -> None:
    created = await create_session(gateway)

    expired = await gateway.client.post(f"{SESSIONS}/{created['id']}/expire", headers=MERCHANT_ONE)
    again = await gateway.client.post(f"{SESSIONS}/{created['id']}/expire", headers=MERCHANT_ONE)

    assert expired.status_code == 200
    assert expired.json()["status"] == "expired"
    assert again.status_code == 409
    assert "expired" in again.json()["detail"]
    told = await events_of(gateway, created["id"])
    assert [event["type"] for event in told] == ["checkout.session.expired"]
    assert told[0]["data"]["object"] == expired.json()
    page = await gateway.client.get(page_path(created["id"]))
    assert page.status_code == 404
    assert "19.99" not in page.text
    assert "merchant_one" not in page.text


async def test_a_complete_session_cannot_be_expired(gateway: Gateway) -> None:
    created = await create_session(gateway)
    await pay(gateway, created["id"])
    response = await gateway.client.post(f"{SESSIONS}/{created['id']}/expire", headers=MERCHANT_ONE)
    assert response.status_code == 409
    assert (await read_session(gateway, created["id"]))["status"] == "complete"


async def test_a_session_waits_for_its_pending_payment_before_expiring(gateway: Gateway) -> None:
    created = await create_session(gateway)
    await pay(gateway, created["id"], PENDING)  # the bank answers "pending"

    refused = await gateway.client.post(f"{SESSIONS}/{created['id']}/expire", headers=MERCHANT_ONE)
    await expire_now(gateway, created["id"])
    expired_by_job = await gateway.app.state.services.checkout.expire_due()

    assert refused.status_code == 409
    assert "payment" in refused.json()["detail"]
    assert expired_by_job == 0
    session = await read_session(gateway, created["id"])
    assert session["status"] == "open"
    assert session["payment_id"] is not None


async def test_the_reconciler_completes_the_session_of_a_payment_it_settles(
    gateway: Gateway,
) -> None:
    """The shopper closed the tab: the payment settles later, and so does the session."""
    created = await create_session(gateway)
    await pay(gateway, created["id"], PENDING)
    session = await read_session(gateway, created["id"])
    gateway.bank.settle(session["payment_id"])
    await make_payments_due(gateway)

    await gateway.app.state.services.reconciler.reconcile_due_payments()

    session = await read_session(gateway, created["id"])
    assert (session["status"], session["payment_status"]) == ("complete", "paid")
    told = await events_of(gateway, created["id"])
    assert [event["type"] for event in told] == ["checkout.session.completed"]
    assert told[0]["data"]["object"] == session
    payment = await gateway.client.get(
        f"/api/v1/payments/{session['payment_id']}", headers=MERCHANT_ONE
    )
    assert payment.json()["status"] == "succeeded"


async def test_the_expiry_job_expires_sessions_past_their_time(gateway: Gateway) -> None:
    due, fresh = await create_session(gateway), await create_session(gateway)
    await expire_now(gateway, due["id"])

    assert await gateway.app.state.services.checkout.expire_due() == 1
    assert await gateway.app.state.services.checkout.expire_due() == 0

    assert (await read_session(gateway, due["id"]))["status"] == "expired"
    assert (await read_session(gateway, fresh["id"]))["status"] == "open"
    told = await events_of(gateway, due["id"])
    assert [event["type"] for event in told] == ["checkout.session.expired"]


async def test_an_authorization_completes_the_session_unpaid(gateway: Gateway) -> None:
    created = await create_session(gateway, capture=False)
    answer = await pay(gateway, created["id"])
    assert answer.status_code == 303
    session = await read_session(gateway, created["id"])
    assert (session["status"], session["payment_status"]) == ("complete", "unpaid")
    payment = await gateway.client.get(
        f"/api/v1/payments/{session['payment_id']}", headers=MERCHANT_ONE
    )
    assert payment.json()["status"] == "authorized"


async def test_a_declined_card_leaves_the_session_open(gateway: Gateway) -> None:
    created = await create_session(gateway)
    await pay(gateway, created["id"], DECLINED)
    session = await read_session(gateway, created["id"])
    assert (session["status"], session["payment_status"]) == ("open", "unpaid")
    assert session["payment_id"] is not None
    assert await events_of(gateway, created["id"]) == []
