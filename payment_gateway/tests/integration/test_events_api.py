"""The event outbox and the events API, on real SQLite and MariaDB.

Every state change a merchant can cause or wait for commits exactly one event, and the event
shows the object exactly as the API showed it right after the change.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from payment_gateway.bootstrap import Services
from payment_gateway.domain.bank import BankAnswer
from payment_gateway.storage.tables import payments
from sqlalchemy import update

from .conftest import MERCHANT_TWO, Gateway, payment_body

PAYMENTS = "/api/v1/payments"
EVENTS = "/api/v1/events"


@pytest.fixture
async def merchant(gateway: Gateway) -> dict[str, str]:
    """A merchant of this test's own: MariaDB's database is shared by the session's tests."""
    services: Services = gateway.app.state.services
    issued = await services.merchants.create(f"events-{uuid.uuid4().hex[:12]}")
    return {"Authorization": f"Bearer {issued.api_key}"}


async def events_of(
    gateway: Gateway, merchant: dict[str, str], object_id: str
) -> list[dict[str, Any]]:
    response = await gateway.client.get(EVENTS, params={"limit": 100}, headers=merchant)
    assert response.status_code == 200
    found = [e for e in response.json()["data"] if e["data"]["object"]["id"] == object_id]
    return list(reversed(found))  # oldest first


async def pay(
    gateway: Gateway, merchant: dict[str, str], number: str = "4242424242424242", **body: object
) -> Any:
    response = await gateway.client.post(
        PAYMENTS, json=payment_body(number, **body), headers=merchant
    )
    assert response.status_code == 201
    return response.json()


async def test_a_charge_commits_one_event_showing_the_payment_as_answered(
    gateway: Gateway, merchant: dict[str, str]
) -> None:
    payment = await pay(gateway, merchant)
    events = await events_of(gateway, merchant, payment["id"])
    assert [event["type"] for event in events] == ["payment.succeeded"]
    event = events[0]
    assert event["object"] == "event"
    assert event["id"].startswith("evt_")
    assert event["data"]["object"] == payment  # exactly the 201's body
    assert event["created_at"] == payment["updated_at"]
    read = await gateway.client.get(f"{EVENTS}/{event['id']}", headers=merchant)
    assert read.json() == event


async def test_a_decline_is_a_payment_failed_event(
    gateway: Gateway, merchant: dict[str, str]
) -> None:
    payment = await pay(gateway, merchant, "4000000000000002")
    events = await events_of(gateway, merchant, payment["id"])
    assert [event["type"] for event in events] == ["payment.failed"]
    assert events[0]["data"]["object"]["decline_reason"] == "insufficient_funds"


async def test_a_payment_resolved_by_the_reconciler_has_its_event_read_back(
    gateway: Gateway, merchant: dict[str, str]
) -> None:
    services: Services = gateway.app.state.services
    pending = await pay(gateway, merchant, "4000000000009995")
    assert pending["status"] == "processing"
    gateway.bank.settle(pending["id"], "0")
    async with services.uow.engine.begin() as connection:  # due now, not after the backoff
        await connection.execute(
            update(payments)
            .where(payments.c.id == pending["id"])
            .values(next_attempt_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    await services.reconciler.reconcile_due_payments()
    after = (await gateway.client.get(f"{PAYMENTS}/{pending['id']}", headers=merchant)).json()
    assert after["status"] == "succeeded"
    events = await events_of(gateway, merchant, pending["id"])
    assert [event["type"] for event in events] == ["payment.processing", "payment.succeeded"]
    assert events[0]["data"]["object"] == pending
    assert events[1]["data"]["object"] == after


async def test_capture_cancel_and_refunds_each_commit_their_event(
    gateway: Gateway, merchant: dict[str, str]
) -> None:
    held = await pay(gateway, merchant, capture=False)
    captured = await gateway.client.post(
        f"{PAYMENTS}/{held['id']}/capture", json={"amount": 600}, headers=merchant
    )
    refund = await gateway.client.post(
        f"{PAYMENTS}/{held['id']}/refunds", json={"amount": 100}, headers=merchant
    )
    other = await pay(gateway, merchant, capture=False)
    canceled = await gateway.client.post(f"{PAYMENTS}/{other['id']}/cancel", headers=merchant)

    held_events = await events_of(gateway, merchant, held["id"])
    assert [e["type"] for e in held_events] == ["payment.authorized", "payment.succeeded"]
    assert held_events[1]["data"]["object"] == captured.json()
    refund_events = await events_of(gateway, merchant, refund.json()["id"])
    assert [e["type"] for e in refund_events] == ["refund.succeeded"]
    assert refund_events[0]["data"]["object"] == refund.json()
    other_events = await events_of(gateway, merchant, other["id"])
    assert [e["type"] for e in other_events] == ["payment.authorized", "payment.canceled"]
    assert other_events[1]["data"]["object"] == canceled.json()


async def test_a_change_that_did_not_happen_has_no_event(
    gateway: Gateway, merchant: dict[str, str]
) -> None:
    held = await pay(gateway, merchant, capture=False)
    path = f"{PAYMENTS}/{held['id']}/capture"
    assert (await gateway.client.post(path, headers=merchant)).status_code == 200
    assert (await gateway.client.post(path, headers=merchant)).status_code == 409
    declined = await gateway.client.post(
        f"{PAYMENTS}/{held['id']}/refunds", json={"amount": 5000}, headers=merchant
    )
    assert declined.status_code == 422
    types = [e["type"] for e in await events_of(gateway, merchant, held["id"])]
    assert types == ["payment.authorized", "payment.succeeded"]


async def test_events_page_newest_first_and_filter_by_type(
    gateway: Gateway, merchant: dict[str, str]
) -> None:
    ids = [(await pay(gateway, merchant))["id"] for _ in range(3)]
    failed = await pay(gateway, merchant, "4000000000000002")
    first = await gateway.client.get(EVENTS, params={"limit": 2}, headers=merchant)
    page = first.json()
    assert page["has_more"] is True
    assert [e["data"]["object"]["id"] for e in page["data"]] == [failed["id"], ids[2]]
    second = await gateway.client.get(
        EVENTS,
        params={"limit": 2, "starting_after": page["data"][-1]["id"]},
        headers=merchant,
    )
    assert [e["data"]["object"]["id"] for e in second.json()["data"]] == [ids[1], ids[0]]
    assert second.json()["has_more"] is False
    back = await gateway.client.get(
        EVENTS,
        params={"limit": 1, "ending_before": second.json()["data"][0]["id"]},
        headers=merchant,
    )
    assert [e["data"]["object"]["id"] for e in back.json()["data"]] == [ids[2]]

    only_failed = await gateway.client.get(
        EVENTS, params={"type": "payment.failed"}, headers=merchant
    )
    assert [e["data"]["object"]["id"] for e in only_failed.json()["data"]] == [failed["id"]]


async def test_events_are_the_merchants_own(gateway: Gateway, merchant: dict[str, str]) -> None:
    payment = await pay(gateway, merchant)
    event = (await events_of(gateway, merchant, payment["id"]))[0]
    other = await gateway.client.get(f"{EVENTS}/{event['id']}", headers=MERCHANT_TWO)
    assert other.status_code == 404
    listed = await gateway.client.get(EVENTS, headers=MERCHANT_TWO)
    assert listed.json()["data"] == []
    cursor = await gateway.client.get(
        EVENTS, params={"starting_after": event["id"]}, headers=MERCHANT_TWO
    )
    assert cursor.status_code == 404
    redeliver = await gateway.client.post(f"{EVENTS}/{event['id']}/redeliver", headers=MERCHANT_TWO)
    assert redeliver.status_code == 404


async def test_bad_listing_parameters_name_the_parameter(
    gateway: Gateway, merchant: dict[str, str]
) -> None:
    for params, field in (
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"type": "payment.exploded"}, "type"),
        ({"colour": "red"}, "colour"),
    ):
        response = await gateway.client.get(EVENTS, params=params, headers=merchant)
        assert response.status_code == 422, params
        assert field in [error["field"] for error in response.json()["errors"]]
    both = await gateway.client.get(
        EVENTS, params={"starting_after": "a", "ending_before": "b"}, headers=merchant
    )
    assert both.status_code == 422


async def test_a_refund_the_bank_declines_is_a_refund_failed_event(
    gateway: Gateway, merchant: dict[str, str]
) -> None:
    payment = await pay(gateway, merchant)
    gateway.bank.operation_answers_default = BankAnswer("100", "refund_declined", "tx")
    refund = await gateway.client.post(
        f"{PAYMENTS}/{payment['id']}/refunds", json={"amount": 100}, headers=merchant
    )
    assert refund.json()["status"] == "failed"
    [event] = await events_of(gateway, merchant, refund.json()["id"])
    assert event["type"] == "refund.failed"
    assert event["data"]["object"] == refund.json()
    assert event["data"]["object"]["failure_reason"] == "refund_declined"
