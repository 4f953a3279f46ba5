"""Refunds exactly once across real processes: racing gateways, and a gateway killed mid-call."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from .conftest import (
    Service,
    bank_deposit,
    bank_env,
    free_port,
    gateway_env,
    post_concurrently,
    start_service,
)

pytestmark = pytest.mark.e2e

MERCHANT = {"Authorization": "Bearer first_merchant_mock_token"}
BODY = {
    "card": {"number": "4242424242424242", "expiry_month": 12, "expiry_year": 2042, "cvv": "123"},
    "amount": 100,
    "currency": "EUR",
}


@pytest.mark.mariadb
def test_fifty_refunds_racing_on_two_gateways_refund_exactly_what_was_captured(
    tmp_path: Path, fresh_mysql_url: str
) -> None:
    bank = start_service("bank", "bank_simulator.main:app", free_port(), tmp_path, bank_env())
    env = gateway_env(tmp_path, bank.url, DATABASE_URL=fresh_mysql_url)
    gateways = [
        start_service(name, "payment_gateway.main:app", free_port(), tmp_path, env)
        for name in ("gateway-a", "gateway-b")
    ]
    try:
        paid = httpx.post(f"{gateways[0].url}/api/v1/payments", json=BODY, headers=MERCHANT)
        payment_id = paid.json()["id"]
        assert paid.json()["amount_captured"] == 100

        responses = post_concurrently(
            [f"{gateways[i % 2].url}/api/v1/payments/{payment_id}/refunds" for i in range(50)],
            {"amount": 30},
            MERCHANT,
        )
        statuses = [response.status_code for response in responses]
        assert statuses.count(201) == 3, statuses
        assert statuses.count(422) == 47, statuses
        assert bank_deposit(bank, payment_id)["refunded_amount"] == 90  # the bank saw three
        payment = httpx.get(
            f"{gateways[1].url}/api/v1/payments/{payment_id}", headers=MERCHANT
        ).json()
        assert payment["amount_refunded"] == 90
    finally:
        for gateway in gateways:
            gateway.stop()
        bank.stop()


def test_gateway_killed_mid_refund_settles_after_restart_without_refunding_twice(
    tmp_path: Path,
) -> None:
    # The bank records each request, then takes 3 s to answer: the gateway dies meanwhile.
    bank = start_service(
        "bank", "bank_simulator.main:app", free_port(), tmp_path, bank_env(LATENCY_MS="3000")
    )
    port = free_port()
    env = gateway_env(tmp_path, bank.url, BANK_TIMEOUT_SECONDS="10")
    gateway = start_service("gateway", "payment_gateway.main:app", port, tmp_path, env)
    restarted: Service | None = None
    try:
        paid = httpx.post(f"{gateway.url}/api/v1/payments", json=BODY, headers=MERCHANT, timeout=30)
        payment_id = paid.json()["id"]
        refunds_url = f"{gateway.url}/api/v1/payments/{payment_id}/refunds"
        request = threading.Thread(
            target=lambda: _ignore_errors(
                lambda: httpx.post(refunds_url, json={"amount": 30}, headers=MERCHANT, timeout=30)
            )
        )
        request.start()
        deadline = time.monotonic() + 10
        while bank_deposit(bank, payment_id)["refunded_amount"] == 0:
            assert time.monotonic() < deadline, "the refund never reached the bank"
            time.sleep(0.05)
        gateway.stop(signal.SIGKILL)  # mid-call: the bank has refunded, the gateway never heard
        request.join()

        restarted = start_service(
            "gateway-restarted", "payment_gateway.main:app", port, tmp_path, env
        )
        listed: dict[str, object] = {}
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            listed = httpx.get(
                f"{restarted.url}/api/v1/payments/{payment_id}/refunds", headers=MERCHANT
            ).json()
            data = listed["data"]
            assert isinstance(data, list)
            if data and data[0]["status"] != "pending":
                break
            time.sleep(0.3)
        data = listed["data"]
        assert isinstance(data, list)
        assert [(r["amount"], r["status"]) for r in data] == [(30, "succeeded")]
        payment = httpx.get(f"{restarted.url}/api/v1/payments/{payment_id}", headers=MERCHANT)
        assert payment.json()["amount_refunded"] == 30
        assert bank_deposit(bank, payment_id)["refunded_amount"] == 30  # refunded once
    finally:
        if restarted is not None:
            restarted.stop()
        gateway.stop(signal.SIGKILL)
        bank.stop()


def _ignore_errors(call: Callable[[], object]) -> None:
    with contextlib.suppress(httpx.HTTPError):  # the gateway is killed under this request
        call()
