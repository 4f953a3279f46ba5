"""Helpers of the checkout tests: sessions made through the API, forms posted like a browser."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from payment_gateway.storage.tables import checkout_sessions, payments
from sqlalchemy import select, update

from .conftest import MERCHANT_ONE, Gateway

SESSIONS = "/api/v1/checkout-sessions"
SUCCEEDS, DECLINED, PENDING = "4242424242424242", "4000000000000002", "4000000000009995"


def session_body(**overrides: object) -> dict[str, object]:
    body: dict[str, object] = {
        "amount": 1999,
        "currency": "EUR",
        "reference": "order-77",
        "success_url": "https://shop.example/thanks?order=77",
        "cancel_url": "https://shop.example/cart",
    }
    body.update(overrides)
    return body


async def create_session(gateway: Gateway, **overrides: object) -> dict[str, Any]:
    response = await gateway.client.post(
        SESSIONS, json=session_body(**overrides), headers=MERCHANT_ONE
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def read_session(gateway: Gateway, session_id: str) -> dict[str, Any]:
    response = await gateway.client.get(f"{SESSIONS}/{session_id}", headers=MERCHANT_ONE)
    assert response.status_code == 200, response.text
    session: dict[str, Any] = response.json()
    return session


def page_path(session_id: str) -> str:
    return f"/checkout/{session_id}"


def hidden(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert match is not None, f"no {name} in the page"
    return match.group(1)


def card_form(html: str, number: str = SUCCEEDS, **overrides: str) -> dict[str, str]:
    """The form as the browser would post it, from the page it was rendered in."""
    form = {
        "csrf_token": hidden(html, "csrf_token"),
        "attempt": hidden(html, "attempt"),
        "card_number": number,
        "card_expiry": "12 / 34",
        "card_cvc": "123",
        "card_name": "Ada Lovelace",
    }
    form.update(overrides)
    return form


async def pay(gateway: Gateway, session_id: str, number: str = SUCCEEDS) -> httpx.Response:
    """Open the page and pay with ``number``, as a shopper would."""
    page = await gateway.client.get(page_path(session_id))
    assert page.status_code == 200, page.text
    return await gateway.client.post(page_path(session_id), data=card_form(page.text, number))


def alerts(html: str) -> list[str]:
    return re.findall(r'role="alert"[^>]*>([^<]+)<', html)


async def events_of(gateway: Gateway, object_id: str) -> list[dict[str, Any]]:
    response = await gateway.client.get("/api/v1/events?limit=100", headers=MERCHANT_ONE)
    return [e for e in response.json()["data"] if e["data"]["object"]["id"] == object_id]


async def expire_now(gateway: Gateway, session_id: str) -> None:
    """Move the session's expires_at into the past (as if its hour had gone by)."""
    engine = gateway.app.state.services.uow.engine
    async with engine.begin() as connection:
        await connection.execute(
            update(checkout_sessions)
            .where(checkout_sessions.c.id == session_id)
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )


async def make_payments_due(gateway: Gateway) -> None:
    engine = gateway.app.state.services.uow.engine
    async with engine.begin() as connection:
        await connection.execute(
            update(payments)
            .where(payments.c.status.in_(["init", "processing"]))
            .values(next_attempt_at=datetime.now(UTC) - timedelta(seconds=1))
        )


async def payments_of(gateway: Gateway, session_id: str) -> list[str]:
    engine = gateway.app.state.services.uow.engine
    async with engine.connect() as connection:
        rows = await connection.execute(
            select(payments.c.status).where(payments.c.checkout_session_id == session_id)
        )
        return [row.status for row in rows]
