"""Events and webhooks across real processes on MariaDB: two gateways sharing one endpoint, a
gateway killed mid-send, and the outbox counted against the state changes of a mixed run that
includes a killed gateway. The receiver is real and verifies every signature with the library.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from webhook_receiver import Answer, WebhookReceiver

from .conftest import Service, bank_env, free_port, gateway_env, start_service

pytestmark = [pytest.mark.e2e, pytest.mark.mariadb]

MERCHANT = {"Authorization": "Bearer first_merchant_mock_token"}
CARDS = ["4242424242424242", "4000000000000002", "4000000000009995"]  # paid, declined, pending
TERMINAL = {"succeeded", "failed", "canceled"}


def body(number: str, index: int, **extra: object) -> dict[str, object]:
    return {
        "card": {"number": number, "expiry_month": 12, "expiry_year": 2042, "cvv": "123"},
        "amount": 1000 + index,
        "currency": "EUR",
        "reference": f"hooks-{index}",
        **extra,
    }


def webhook_env(workdir: Path, bank_url: str, database_url: str, **extra: str) -> dict[str, str]:
    return gateway_env(
        workdir,
        bank_url,
        DATABASE_URL=database_url,
        WEBHOOK_RETRY_DELAYS="0.5,0.5,0.5",
        WEBHOOK_POLL_INTERVAL_SECONDS="0.2",
        WEBHOOK_TIMEOUT_SECONDS="1",  # a lease of 7 s
        **extra,
    )


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as running:
        yield running


@pytest.fixture
def bank(tmp_path: Path) -> Iterator[Service]:
    service = start_service("bank", "bank_simulator.main:app", free_port(), tmp_path, bank_env())
    yield service
    service.stop()


def register(gateway: Service, receiver: WebhookReceiver) -> dict[str, Any]:
    created = httpx.post(
        f"{gateway.url}/api/v1/webhook-endpoints", json={"url": receiver.url}, headers=MERCHANT
    )
    assert created.status_code == 201, created.text
    endpoint: dict[str, Any] = created.json()
    receiver.secrets = [endpoint["secret"]]
    return endpoint


def every_page(gateway: Service, path: str) -> list[dict[str, Any]]:
    """Every item of a listing (events or payments), newest first."""
    found: list[dict[str, Any]] = []
    params: dict[str, str | int] = {"limit": 100}
    while True:
        page = httpx.get(f"{gateway.url}{path}", params=params, headers=MERCHANT).json()
        found += page["data"]
        if not page["has_more"]:
            return found
        params["starting_after"] = page["data"][-1]["id"]


def all_events(gateway: Service) -> list[dict[str, Any]]:
    return every_page(gateway, "/api/v1/events")


def list_payments(gateway: Service) -> list[dict[str, Any]]:
    return every_page(gateway, "/api/v1/payments")


def wait_until_settled(gateway: Service, payment_ids: list[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    for payment_id in payment_ids:
        while True:
            status = httpx.get(
                f"{gateway.url}/api/v1/payments/{payment_id}", headers=MERCHANT
            ).json()["status"]
            if status in TERMINAL or status == "authorized":
                break
            assert time.monotonic() < deadline, f"{payment_id} still {status}"
            time.sleep(0.2)


async def pay_many(urls: list[str], count: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=30) as client:
        return await asyncio.gather(
            *(
                client.post(
                    f"{urls[i % len(urls)]}/api/v1/payments",
                    json=body(CARDS[i % len(CARDS)], i),
                    headers=MERCHANT,
                )
                for i in range(count)
            )
        )


def test_two_gateways_deliver_every_event_once_each_attempt(
    tmp_path: Path, fresh_mysql_url: str, bank: Service, receiver: WebhookReceiver
) -> None:
    metrics_ports = free_port(), free_port()
    env = webhook_env(tmp_path, bank.url, fresh_mysql_url)
    first, second = (
        start_service(
            name,
            "payment_gateway.main:app",
            free_port(),
            tmp_path,
            {**env, "METRICS_PORT": str(port)},
        )
        for name, port in zip(("gateway-a", "gateway-b"), metrics_ports, strict=True)
    )
    try:
        register(first, receiver)
        answers = asyncio.run(pay_many([first.url, second.url], 60))
        assert {answer.status_code for answer in answers} == {201}
        wait_until_settled(first, [answer.json()["id"] for answer in answers])
        events = all_events(second)
        # 20 paid, 20 declined, 20 pending that the reconciler settles: 80 events.
        assert Counter(event["type"] for event in events) == {
            "payment.succeeded": 40,
            "payment.failed": 20,
            "payment.processing": 20,
        }
        received = receiver.wait_for_sync(len(events), timeout=30)
        time.sleep(1)  # a second chance for any duplicate to show
        received = receiver.requests
        assert all(request.verified for request in received)
        by_id = Counter(request.event_id for request in received)
        assert set(by_id) == {event["id"] for event in events}  # every event arrived
        assert max(by_id.values()) == 1  # and each attempt was sent once, by one gateway
        for request in received:
            assert (
                request.body
                == httpx.get(
                    f"{first.url}/api/v1/events/{request.event_id}", headers=MERCHANT
                ).content
            )

        # Either gateway may have sent any share of the attempts (SKIP LOCKED claims): together
        # their metrics count each one once, and each counts the lag of what it delivered.
        delivered_by_both = 0.0
        for port in metrics_ports:
            metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
            delivered = re.search(
                r'gateway_webhook_attempts_total\{outcome="delivered"\} (\S+)', metrics
            )
            lag = re.search(r"gateway_webhook_delivery_lag_seconds_count (\S+)", metrics)
            assert lag is not None
            assert float(lag.group(1)) == (float(delivered.group(1)) if delivered else 0.0)
            delivered_by_both += float(delivered.group(1)) if delivered else 0.0
            assert "gateway_webhook_oldest_undelivered_event_age_seconds" in metrics
        assert delivered_by_both == len(received)
    finally:
        first.stop()
        second.stop()


def test_a_gateway_killed_mid_send_sends_the_event_again_after_its_lease(
    tmp_path: Path, fresh_mysql_url: str, bank: Service, receiver: WebhookReceiver
) -> None:
    env = webhook_env(tmp_path, bank.url, fresh_mysql_url)
    port = free_port()
    gateway = start_service("gateway", "payment_gateway.main:app", port, tmp_path, env)
    try:
        register(gateway, receiver)
        receiver.default = Answer(204, delay=30)  # the worker will be killed while it waits
        payment = httpx.post(
            f"{gateway.url}/api/v1/payments", json=body(CARDS[0], 1), headers=MERCHANT
        ).json()
        [first] = receiver.wait_for_sync(1)
        gateway.stop(signal.SIGKILL)
        receiver.default = Answer(204)
        gateway = start_service("gateway", "payment_gateway.main:app", port, tmp_path, env)
        requests = receiver.wait_for_sync(2, timeout=20)  # once the 7 s lease has run out
        assert requests[1].event_id == first.event_id
        assert requests[1].body == first.body
        assert requests[1].json()["data"]["object"]["id"] == payment["id"]
        assert requests[1].verified
    finally:
        gateway.stop()


def test_the_outbox_has_one_event_per_state_change_after_a_killed_gateway(
    tmp_path: Path, fresh_mysql_url: str, bank: Service
) -> None:
    # A payment killed before its bank call is failed once the bank has not heard of it.
    env = webhook_env(tmp_path, bank.url, fresh_mysql_url, RECONCILE_NOT_FOUND_GRACE_SECONDS="8")
    port = free_port()
    gateway = start_service("gateway", "payment_gateway.main:app", port, tmp_path, env)
    try:

        async def mixed_run() -> list[httpx.Response]:
            async with httpx.AsyncClient(timeout=30) as client:
                first = await asyncio.gather(
                    *(
                        client.post(
                            f"{gateway.url}/api/v1/payments",
                            json=body(CARDS[i % 3], i, capture=i % 2 == 0),
                            headers=MERCHANT,
                        )
                        for i in range(30)
                    )
                )
                for answer in first:
                    payment = answer.json()
                    path = f"{gateway.url}/api/v1/payments/{payment['id']}"
                    if payment["status"] == "authorized":
                        action = "capture" if payment["amount"] % 4 == 0 else "cancel"
                        await client.post(f"{path}/{action}", headers=MERCHANT)
                    elif payment["status"] == "succeeded":
                        await client.post(f"{path}/refunds", json={"amount": 10}, headers=MERCHANT)
                # Killed under load: requests are in flight when the process dies.
                flight = [
                    asyncio.ensure_future(
                        client.post(
                            f"{gateway.url}/api/v1/payments",
                            json=body(CARDS[i % 3], 100 + i),
                            headers=MERCHANT,
                        )
                    )
                    for i in range(30)
                ]
                await asyncio.sleep(0.05)
                gateway.stop(signal.SIGKILL)
                for request in flight:
                    with contextlib.suppress(httpx.HTTPError):
                        await request
                return list(first)

        asyncio.run(mixed_run())
        gateway = start_service("gateway", "payment_gateway.main:app", port, tmp_path, env)
        payments = list_payments(gateway)
        wait_until_settled(gateway, [payment["id"] for payment in payments])
        payments = list_payments(gateway)
        events = all_events(gateway)

        by_object: dict[str, list[dict[str, Any]]] = {}
        for event in reversed(events):  # oldest first
            by_object.setdefault(event["data"]["object"]["id"], []).append(event)
        assert len({event["id"] for event in events}) == len(events)
        for payment in payments:
            history = [e["type"] for e in by_object.get(payment["id"], [])]
            # Each status it reached (but init) is told once, in order, ending where it is.
            assert len(history) == len(set(history)), (payment["id"], history)
            assert history[-1] == f"payment.{payment['status']}", (payment["id"], history)
            assert set(history) <= {
                "payment.processing",
                "payment.authorized",
                f"payment.{payment['status']}",
            }
            for event in by_object[payment["id"]]:
                assert event["data"]["object"]["status"] == event["type"].split(".")[1]
            # As it stands now, but for what its refunds changed since (they are events too).
            told = by_object[payment["id"]][-1]["data"]["object"]
            assert _before_refunds(told) == _before_refunds(payment)
        refunds = [
            refund
            for payment in payments
            for refund in httpx.get(
                f"{gateway.url}/api/v1/payments/{payment['id']}/refunds", headers=MERCHANT
            ).json()["data"]
        ]
        assert refunds
        for refund in refunds:
            history = [e["type"] for e in by_object.get(refund["id"], [])]
            assert history == [f"refund.{refund['status']}"]
        # Nothing else: every event belongs to a payment or refund of this run.
        assert set(by_object) == {p["id"] for p in payments} | {r["id"] for r in refunds}
    finally:
        gateway.stop()


def _before_refunds(payment: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in payment.items() if k not in ("amount_refunded", "refunded")}
