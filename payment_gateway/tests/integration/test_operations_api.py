"""After the charge, through the API on real SQLite and MariaDB: capture, cancel, refunds."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from asgi_lifespan import LifespanManager
from fakes import FakeBank
from payment_gateway.domain.bank import BankAnswer, BankFault
from payment_gateway.domain.operations import OperationKind
from payment_gateway.main import create_app

from .conftest import MERCHANT_ONE, MERCHANT_TWO, Gateway, gateway_settings, payment_body

PAYMENTS = "/api/v1/payments"


async def authorized(gateway: Gateway, amount: int = 1000) -> dict[str, object]:
    response = await gateway.client.post(
        PAYMENTS, json=payment_body(amount=amount, capture=False), headers=MERCHANT_ONE
    )
    assert response.status_code == 201
    payment: dict[str, object] = response.json()
    assert (payment["status"], payment["capture"], payment["amount_captured"]) == (
        "authorized",
        False,
        0,
    )
    return payment


async def captured(gateway: Gateway, amount: int = 100) -> str:
    response = await gateway.client.post(
        PAYMENTS, json=payment_body(amount=amount), headers=MERCHANT_ONE
    )
    assert response.json()["status"] == "succeeded"
    assert response.json()["amount_captured"] == amount
    payment_id: str = response.json()["id"]
    return payment_id


def field_names(response: httpx.Response) -> list[str]:
    return [error["field"] for error in response.json()["errors"]]


def bank_operations(gateway: Gateway, kind: OperationKind) -> list[tuple[str, str, int]]:
    return [(op_id, pid, amount) for k, op_id, pid, amount in gateway.bank.operations if k is kind]


async def test_a_partial_capture_takes_part_and_releases_the_rest(gateway: Gateway) -> None:
    payment = await authorized(gateway)
    path = f"{PAYMENTS}/{payment['id']}/capture"
    too_much = await gateway.client.post(path, json={"amount": 1001}, headers=MERCHANT_ONE)
    assert too_much.status_code == 422
    assert field_names(too_much) == ["amount"]

    done = await gateway.client.post(path, json={"amount": 600}, headers=MERCHANT_ONE)
    assert done.status_code == 200
    assert (done.json()["status"], done.json()["amount_captured"]) == ("succeeded", 600)
    assert bank_operations(gateway, OperationKind.CAPTURE)[0][1:] == (payment["id"], 600)

    again = await gateway.client.post(path, headers=MERCHANT_ONE)
    assert again.status_code == 409
    assert "succeeded" in again.json()["detail"]
    assert len(bank_operations(gateway, OperationKind.CAPTURE)) == 1


async def test_a_capture_without_a_body_takes_everything(gateway: Gateway) -> None:
    payment = await authorized(gateway, amount=750)
    done = await gateway.client.post(f"{PAYMENTS}/{payment['id']}/capture", headers=MERCHANT_ONE)
    assert (done.json()["status"], done.json()["amount_captured"]) == ("succeeded", 750)


async def test_cancel_releases_an_authorization_once(gateway: Gateway) -> None:
    payment = await authorized(gateway)
    path = f"{PAYMENTS}/{payment['id']}/cancel"
    canceled = await gateway.client.post(path, headers=MERCHANT_ONE)
    assert canceled.status_code == 200
    body = canceled.json()
    assert (body["status"], body["cancellation_reason"]) == ("canceled", "requested_by_merchant")
    assert (await gateway.client.post(path, headers=MERCHANT_ONE)).status_code == 409
    capture = await gateway.client.post(f"{PAYMENTS}/{payment['id']}/capture", headers=MERCHANT_ONE)
    assert capture.status_code == 409
    assert "canceled" in capture.json()["detail"]
    assert len(bank_operations(gateway, OperationKind.VOID)) == 1
    assert bank_operations(gateway, OperationKind.CAPTURE) == []


async def test_a_captured_payment_cannot_be_captured_or_canceled(gateway: Gateway) -> None:
    payment_id = await captured(gateway)
    for action in ("capture", "cancel"):
        response = await gateway.client.post(
            f"{PAYMENTS}/{payment_id}/{action}", headers=MERCHANT_ONE
        )
        assert response.status_code == 409
        assert response.headers["content-type"] == "application/problem+json"
        assert "succeeded" in response.json()["detail"]


async def test_refunds_partial_and_repeated_never_exceed_what_was_captured(
    gateway: Gateway,
) -> None:
    payment_id = await captured(gateway, amount=100)
    path = f"{PAYMENTS}/{payment_id}/refunds"
    first = await gateway.client.post(
        path,
        json={"amount": 30, "reason": "requested_by_customer", "reference": "rma-17"},
        headers=MERCHANT_ONE,
    )
    assert first.status_code == 201
    refund = first.json()
    assert refund["status"] == "succeeded"
    assert (refund["amount"], refund["reason"], refund["reference"]) == (
        30,
        "requested_by_customer",
        "rma-17",
    )
    assert first.headers["Location"] == f"/api/v1/refunds/{refund['id']}"
    over = await gateway.client.post(path, json={"amount": 71}, headers=MERCHANT_ONE)
    assert over.status_code == 422
    assert field_names(over) == ["amount"]
    assert "70" in over.json()["errors"][0]["message"]  # states what is left
    rest = await gateway.client.post(path, headers=MERCHANT_ONE)  # default: what is left
    assert (rest.status_code, rest.json()["amount"]) == (201, 70)

    payment = (await gateway.client.get(f"{PAYMENTS}/{payment_id}", headers=MERCHANT_ONE)).json()
    assert (payment["status"], payment["amount_refunded"], payment["refunded"]) == (
        "succeeded",
        100,
        True,
    )
    listed = (await gateway.client.get(path, headers=MERCHANT_ONE)).json()
    assert listed["object"] == "list"
    assert [r["amount"] for r in listed["data"]] == [70, 30]  # newest first
    one = await gateway.client.get(f"/api/v1/refunds/{refund['id']}", headers=MERCHANT_ONE)
    assert one.json() == {**refund, "updated_at": one.json()["updated_at"]}
    assert len(bank_operations(gateway, OperationKind.REFUND)) == 2


async def test_another_merchant_sees_no_refund_and_refunds_nothing(gateway: Gateway) -> None:
    payment_id = await captured(gateway)
    refund = await gateway.client.post(
        f"{PAYMENTS}/{payment_id}/refunds", json={"amount": 10}, headers=MERCHANT_ONE
    )
    refund_id = refund.json()["id"]
    for method, path in (
        ("GET", f"/api/v1/refunds/{refund_id}"),
        ("GET", f"{PAYMENTS}/{payment_id}/refunds"),
        ("POST", f"{PAYMENTS}/{payment_id}/refunds"),
        ("POST", f"{PAYMENTS}/{payment_id}/capture"),
        ("POST", f"{PAYMENTS}/{payment_id}/cancel"),
    ):
        response = await gateway.client.request(method, path, headers=MERCHANT_TWO)
        assert response.status_code == 404, path
    assert len(bank_operations(gateway, OperationKind.REFUND)) == 1


async def test_only_a_succeeded_payment_can_be_refunded(gateway: Gateway) -> None:
    payment = await authorized(gateway)
    response = await gateway.client.post(
        f"{PAYMENTS}/{payment['id']}/refunds", headers=MERCHANT_ONE
    )
    assert response.status_code == 409
    assert "authorized" in response.json()["detail"]


async def test_fifty_concurrent_refunds_of_30_on_100_let_exactly_three_through(
    gateway: Gateway,
) -> None:
    """The Hyperswitch bug: two concurrent 60s on 100 both passed. Here a guarded UPDATE."""
    payment_id = await captured(gateway, amount=100)
    path = f"{PAYMENTS}/{payment_id}/refunds"
    responses = await asyncio.gather(
        *(gateway.client.post(path, json={"amount": 30}, headers=MERCHANT_ONE) for _ in range(50))
    )
    statuses = [r.status_code for r in responses]
    assert statuses.count(201) == 3, statuses
    assert statuses.count(422) == 47
    assert all(field_names(r) == ["amount"] for r in responses if r.status_code == 422)
    assert len(bank_operations(gateway, OperationKind.REFUND)) == 3
    payment = (await gateway.client.get(f"{PAYMENTS}/{payment_id}", headers=MERCHANT_ONE)).json()
    assert payment["amount_refunded"] == 90


async def test_idempotent_refunds_replay_and_refuse_other_content(gateway: Gateway) -> None:
    payment_id = await captured(gateway)
    path = f"{PAYMENTS}/{payment_id}/refunds"
    headers = MERCHANT_ONE | {"Idempotency-Key": "refund-once"}
    first = await gateway.client.post(path, json={"amount": 40}, headers=headers)
    replay = await gateway.client.post(path, json={"amount": 40}, headers=headers)
    assert (first.status_code, replay.status_code) == (201, 201)
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json()["id"] == first.json()["id"]
    other = await gateway.client.post(path, json={"amount": 41}, headers=headers)
    assert other.status_code == 422
    assert field_names(other) == ["Idempotency-Key"]
    # The same key for another kind of operation is a key of its own.
    capture = await gateway.client.post(
        f"{PAYMENTS}/{payment_id}/capture",
        headers=MERCHANT_ONE | {"Idempotency-Key": "refund-once"},
    )
    assert capture.status_code == 409
    assert len(bank_operations(gateway, OperationKind.REFUND)) == 1


async def test_a_refund_the_bank_declines_fails_and_releases_its_amount(gateway: Gateway) -> None:
    payment_id = await captured(gateway, amount=100)
    path = f"{PAYMENTS}/{payment_id}/refunds"
    gateway.bank.operation_answers_default = BankAnswer("100", "refund_declined", "tx")
    declined = await gateway.client.post(path, json={"amount": 100}, headers=MERCHANT_ONE)
    assert declined.status_code == 201
    assert (declined.json()["status"], declined.json()["failure_reason"]) == (
        "failed",
        "refund_declined",
    )
    gateway.bank.operation_answers_default = None
    retried = await gateway.client.post(path, json={"amount": 100}, headers=MERCHANT_ONE)
    assert retried.json()["status"] == "succeeded"


async def test_an_uncertain_refund_is_pending_until_the_reconciler_asks(gateway: Gateway) -> None:
    payment_id = await captured(gateway, amount=100)
    gateway.bank.fault = BankFault.UNCERTAIN
    response = await gateway.client.post(
        f"{PAYMENTS}/{payment_id}/refunds", json={"amount": 60}, headers=MERCHANT_ONE
    )
    gateway.bank.fault = None
    refund = response.json()
    assert (response.status_code, refund["status"]) == (201, "pending")
    # Pending counts against what is left: 40 more pass, 41 do not.
    more = await gateway.client.post(
        f"{PAYMENTS}/{payment_id}/refunds", json={"amount": 41}, headers=MERCHANT_ONE
    )
    assert more.status_code == 422

    reconciler = gateway.app.state.services.reconciler
    await _age_operations(gateway)
    await reconciler.reconcile_due_operations()
    settled = await gateway.client.get(f"/api/v1/refunds/{refund['id']}", headers=MERCHANT_ONE)
    assert settled.json()["status"] == "succeeded"
    assert len(bank_operations(gateway, OperationKind.REFUND)) == 1  # asked, never repeated


async def test_authorizations_not_captured_in_time_are_canceled_as_expired(
    database_url: str, tmp_path: Path
) -> None:
    bank = FakeBank()
    settings = gateway_settings(database_url, tmp_path, authorization_ttl_seconds=0.5)
    app = create_app(settings, bank=bank, run_reconciler=False)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            gateway = Gateway(client, bank, app, settings)
            payment = await authorized(gateway)
            await asyncio.sleep(0.6)
            await app.state.services.reconciler.expire_authorizations()
            read = await client.get(f"{PAYMENTS}/{payment['id']}", headers=MERCHANT_ONE)
            listed = await client.get(
                "/api/v1/events", params={"type": "payment.canceled"}, headers=MERCHANT_ONE
            )
    assert (read.json()["status"], read.json()["cancellation_reason"]) == ("canceled", "expired")
    assert [op[2] for op in bank.operations if op[0] is OperationKind.VOID] == [payment["id"]]
    # The expiry is a state change like any other: its event shows the canceled payment.
    told = [e for e in listed.json()["data"] if e["data"]["object"]["id"] == payment["id"]]
    assert [event["data"]["object"] for event in told] == [read.json()]


async def _age_operations(gateway: Gateway) -> None:
    """Make every pending operation due for the reconciler now."""
    from datetime import UTC, datetime, timedelta

    from payment_gateway.storage.tables import operations
    from sqlalchemy import update

    engine = gateway.app.state.services.uow.engine
    async with engine.begin() as connection:
        await connection.execute(
            update(operations)
            .where(operations.c.status == "pending")
            .values(next_attempt_at=datetime.now(UTC) - timedelta(seconds=1))
        )
