"""Exactly once across processes: duplicates on two gateways, and a gateway killed mid-call."""

from __future__ import annotations

import contextlib
import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from .conftest import (
    BANK_AUTH,
    Service,
    bank_env,
    deposits_logged,
    free_port,
    gateway_env,
    post_concurrently,
    start_service,
)

pytestmark = pytest.mark.e2e

MERCHANT = {"Authorization": "Bearer first_merchant_mock_token"}
BODY = {
    "card": {"number": "4242424242424242", "expiry_month": 12, "expiry_year": 2042, "cvv": "123"},
    "amount": 1999,
    "currency": "USD",
    "reference": "exactly-once",
}


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path


@pytest.mark.mariadb
def test_fifty_duplicates_on_two_gateways_make_one_deposit(
    workdir: Path, fresh_mysql_url: str
) -> None:
    bank = start_service(
        "bank", "bank_simulator.main:app", free_port(), workdir, bank_env(LATENCY_MS="300")
    )
    gateways: list[Service] = []
    try:
        # Both start together and both migrate: the migration lock makes that safe.
        env = gateway_env(workdir, bank.url, DATABASE_URL=fresh_mysql_url)
        starters = [
            threading.Thread(
                target=lambda name=name: gateways.append(
                    start_service(name, "payment_gateway.main:app", free_port(), workdir, env)
                )
            )
            for name in ("gateway-a", "gateway-b")
        ]
        for starter in starters:
            starter.start()
        for starter in starters:
            starter.join()
        assert len(gateways) == 2

        responses = post_concurrently(
            [f"{gateways[i % 2].url}/api/v1/payments" for i in range(50)],
            BODY,
            MERCHANT | {"Idempotency-Key": "two-gateways-one-key"},
        )
        statuses = [r.status_code for r in responses]
        assert set(statuses) <= {201, 409}, statuses
        ids = {r.json()["id"] for r in responses if r.status_code == 201}
        assert len(ids) == 1
        assert 201 in statuses
        assert deposits_logged(bank) == list(ids)  # one deposit, for that payment
        # Once the first has finished, every retry replays it, on either gateway.
        for gateway in gateways:
            replay = httpx.post(
                f"{gateway.url}/api/v1/payments",
                json=BODY,
                headers=MERCHANT | {"Idempotency-Key": "two-gateways-one-key"},
            )
            assert replay.status_code == 201
            assert replay.headers["Idempotent-Replayed"] == "true"
            assert replay.json()["id"] in ids
            assert replay.json()["status"] == "succeeded"
    finally:
        for gateway in gateways:
            gateway.stop()
        bank.stop()


def test_gateway_killed_mid_call_resolves_after_restart_without_recharging(
    workdir: Path,
) -> None:
    # The bank records the deposit, then takes 3 s to answer: the gateway dies meanwhile.
    bank = start_service(
        "bank", "bank_simulator.main:app", free_port(), workdir, bank_env(LATENCY_MS="3000")
    )
    port = free_port()
    env = gateway_env(workdir, bank.url, BANK_TIMEOUT_SECONDS="1")
    gateway = start_service(
        "gateway", "payment_gateway.main:app", port, workdir, env | {"BANK_TIMEOUT_SECONDS": "10"}
    )
    restarted: Service | None = None
    headers = MERCHANT | {"Idempotency-Key": "killed-mid-call"}
    try:
        request = threading.Thread(
            target=lambda: _ignore_errors(
                lambda: httpx.post(
                    f"{gateway.url}/api/v1/payments", json=BODY, headers=headers, timeout=30
                )
            )
        )
        request.start()
        deadline = time.monotonic() + 10
        while not deposits_logged(bank) and time.monotonic() < deadline:
            time.sleep(0.05)
        (payment_id,) = deposits_logged(bank)
        gateway.stop(signal.SIGKILL)  # mid-call: the bank has charged, the gateway never heard
        request.join()

        with sqlite3.connect(workdir / "var" / "gateway.db") as db:
            row = db.execute("SELECT status FROM payments WHERE id = ?", (payment_id,)).fetchone()
        status = row[0]
        assert status == "init"

        restarted = start_service(
            "gateway-restarted", "payment_gateway.main:app", port, workdir, env
        )
        # While its request may still be running, a retry is told to wait, not charged again.
        early = httpx.post(f"{restarted.url}/api/v1/payments", json=BODY, headers=headers)
        assert early.status_code in (201, 409)

        deadline = time.monotonic() + 30
        payment: dict[str, object] = {}
        while time.monotonic() < deadline:
            payment = httpx.get(
                f"{restarted.url}/api/v1/payments/{payment_id}", headers=MERCHANT
            ).json()
            if payment["status"] != "init":
                break
            time.sleep(0.3)
        assert payment["status"] == "succeeded"
        bank_view = httpx.get(f"{bank.url}/api/v1/deposits/{payment_id}", headers=BANK_AUTH).json()
        assert payment["tracking_id"] == bank_view["transaction_id"]
        retry = httpx.post(f"{restarted.url}/api/v1/payments", json=BODY, headers=headers)
        assert retry.status_code == 201
        assert retry.json()["id"] == payment_id
        assert retry.json()["status"] == "succeeded"
        assert deposits_logged(bank) == [payment_id]  # charged once, resolved by inquiry
    finally:
        if restarted is not None:
            restarted.stop()
        gateway.stop(signal.SIGKILL)
        bank.stop()


def _ignore_errors(call: Callable[[], object]) -> None:
    # The gateway is killed under this request: that is the point.
    with contextlib.suppress(httpx.HTTPError):
        call()


def test_sigterm_lets_in_flight_payments_finish(workdir: Path) -> None:
    bank = start_service(
        "bank", "bank_simulator.main:app", free_port(), workdir, bank_env(LATENCY_MS="1500")
    )
    gateway = start_service(
        "gateway",
        "payment_gateway.main:app",
        free_port(),
        workdir,
        gateway_env(workdir, bank.url, BANK_TIMEOUT_SECONDS="5"),
        "--timeout-graceful-shutdown",
        "20",
    )
    responses: list[httpx.Response] = []
    try:
        request = threading.Thread(
            target=lambda: responses.append(
                httpx.post(
                    f"{gateway.url}/api/v1/payments", json=BODY, headers=MERCHANT, timeout=30
                )
            )
        )
        request.start()
        deadline = time.monotonic() + 10
        while not deposits_logged(bank) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert deposits_logged(bank), "the payment never reached the bank"
        gateway.process.send_signal(signal.SIGTERM)  # a rolling deploy stops this replica
        request.join(timeout=30)
        # uvicorn re-raises the signal once it has shut down cleanly, hence -SIGTERM.
        assert gateway.process.wait(timeout=30) in (0, -signal.SIGTERM)
        assert "Finished server process" in gateway.log()
    finally:
        gateway.stop(signal.SIGKILL)
        bank.stop()
    assert len(responses) == 1
    assert responses[0].status_code == 201
    assert responses[0].json()["status"] == "succeeded"
