"""The gateway against a misbehaving bank: a real HTTP server in the test, the real adapter.

Each fault must leave the payment `failed` or `processing` (never `init`, never a `500`), and
the reconciler must then bring every `processing` payment to the bank's truth, with one
deposit per payment.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
from asgi_lifespan import LifespanManager
from payment_gateway.main import create_app
from payment_gateway.service.reconcile import Reconciler
from payment_gateway.storage.tables import payments
from sqlalchemy import update

from .conftest import MERCHANT_ONE, free_port, gateway_settings, payment_body


@dataclass
class MisbehavingBank:
    """Answers deposits the way `mode` says; remembers what it charged."""

    mode: str = "ok"
    answer_delay: float = 0.0
    charged: dict[str, dict[str, Any]] = field(default_factory=dict)
    deposit_calls: int = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path: str = scope["path"]
        if scope["method"] == "GET" and path.startswith("/api/v1/deposits/"):
            found = self.charged.get(path.rsplit("/", 1)[1])
            await self._send(send, 200 if found else 404, orjson.dumps(found or {}))
            return
        self.deposit_calls += 1
        reference = orjson.loads(body)["reference"]
        transaction = {
            "transaction_id": f"tx-{reference}",
            "reference": reference,
            "status": "succeeded",
            "code": "0",
            "reason": None,
        }
        mode = self.mode
        if mode in ("500", "503", "400", "429"):
            await self._send(send, int(mode), b'{"detail": "no"}')
            return
        self.charged[reference] = transaction  # charged from here on
        if mode == "slow":
            await asyncio.sleep(self.answer_delay)
        if mode == "garbage":
            await self._send(send, 201, b"<html>gateway timeout</html>")
        elif mode == "unknown_code":
            await self._send(send, 201, orjson.dumps({**transaction, "code": "777"}))
        else:
            await self._send(send, 201, orjson.dumps(transaction))

    @staticmethod
    async def _send(send: Any, status: int, body: bytes) -> None:
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


@dataclass
class BankServer:
    bank: MisbehavingBank
    url: str


@pytest.fixture(scope="module")
def bank_server() -> Iterator[BankServer]:
    bank = MisbehavingBank()
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            bank, port=port, log_level="warning", lifespan="off", timeout_graceful_shutdown=1
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "the test bank did not start"
    yield BankServer(bank, f"http://127.0.0.1:{port}")
    server.should_exit = True
    thread.join(timeout=10)


@dataclass
class Harness:
    client: httpx.AsyncClient
    reconciler: Reconciler
    app: Any

    async def make_due(self) -> None:
        """Skip the backoff wait: every open payment is due now."""
        engine = self.app.state.services.uow.engine
        async with engine.begin() as connection:
            await connection.execute(
                update(payments)
                .where(payments.c.status.in_(["init", "processing"]))
                .values(next_attempt_at=datetime.now(UTC) - timedelta(seconds=1))
            )


@contextlib.asynccontextmanager
async def running_gateway(
    database_url: str, tmp_path: Path, bank_url: str, **extra: Any
) -> AsyncIterator[Harness]:
    """The gateway app with its real HTTP bank adapter, driven in-process; no reconciler loop."""
    settings = gateway_settings(
        database_url, tmp_path, bank_url=bank_url, bank_timeout_seconds=0.5, **extra
    )
    app = create_app(settings, run_reconciler=False)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            yield Harness(client, app.state.services.reconciler, app)


@pytest.fixture
async def harness(
    database_url: str, tmp_path: Path, bank_server: BankServer
) -> AsyncIterator[Harness]:
    bank_server.bank.mode = "ok"
    async with running_gateway(
        database_url, tmp_path, bank_server.url, reconcile_not_found_grace_seconds=3600
    ) as gateway:
        yield gateway


async def pay(harness: Harness) -> dict[str, Any]:
    started = time.monotonic()
    response = await harness.client.post(
        "/api/v1/payments", json=payment_body(), headers=MERCHANT_ONE
    )
    # However slow the bank (10 s here), the merchant hears back after the 0.5 s timeout plus
    # a margin; the bound is loose so a busy machine cannot make it flaky.
    assert time.monotonic() - started < 5.0
    assert response.status_code == 201, response.text
    payment: dict[str, Any] = response.json()
    return payment


async def status_of(harness: Harness, payment_id: str) -> dict[str, Any]:
    response = await harness.client.get(f"/api/v1/payments/{payment_id}", headers=MERCHANT_ONE)
    result: dict[str, Any] = response.json()
    return result


@pytest.mark.parametrize("mode", ["slow", "garbage", "unknown_code"])
async def test_charged_but_no_usable_answer_is_processing_then_reconciled(
    harness: Harness, bank_server: BankServer, mode: str
) -> None:
    bank_server.bank.mode = mode
    bank_server.bank.answer_delay = 10.0  # far longer than the gateway's 0.5 s timeout
    calls_before = bank_server.bank.deposit_calls

    payment = await pay(harness)

    assert payment["status"] == "processing"
    assert payment["decline_reason"] is None
    await harness.make_due()
    report = await harness.reconciler.reconcile_due_payments()
    assert report.resolved >= 1
    settled = await status_of(harness, payment["id"])
    assert (settled["status"], settled["code"]) == ("succeeded", "0")
    assert settled["tracking_id"] == f"tx-{payment['id']}"
    assert bank_server.bank.deposit_calls == calls_before + 1  # reconciling never re-charges


@pytest.mark.parametrize("mode", ["500", "503", "429"])
async def test_server_errors_are_processing_and_stay_so_within_the_grace_period(
    harness: Harness, bank_server: BankServer, mode: str
) -> None:
    bank_server.bank.mode = mode
    payment = await pay(harness)
    assert payment["status"] == "processing"

    await harness.make_due()
    await harness.reconciler.reconcile_due_payments()
    # Within the grace period a 404 may just mean "not arrived yet".
    assert (await status_of(harness, payment["id"]))["status"] == "processing"


async def test_bank_404_after_the_grace_period_fails_the_payment(
    database_url: str, tmp_path: Path, bank_server: BankServer
) -> None:
    bank_server.bank.mode = "503"
    async with running_gateway(
        database_url, tmp_path, bank_server.url, reconcile_not_found_grace_seconds=0
    ) as harness:
        payment = await pay(harness)
        assert payment["status"] == "processing"
        await harness.make_due()
        await harness.reconciler.reconcile_due_payments()
        final = await status_of(harness, payment["id"])
    assert (final["status"], final["decline_reason"]) == ("failed", "bank_unavailable")


async def test_refused_request_fails_as_bank_rejected(
    harness: Harness, bank_server: BankServer
) -> None:
    bank_server.bank.mode = "400"
    payment = await pay(harness)
    assert (payment["status"], payment["decline_reason"]) == ("failed", "bank_rejected")


async def test_unreachable_bank_fails_as_bank_unavailable(
    database_url: str, tmp_path: Path
) -> None:
    async with running_gateway(
        database_url, tmp_path, f"http://127.0.0.1:{free_port()}"
    ) as harness:
        payment = await pay(harness)
    assert (payment["status"], payment["decline_reason"]) == ("failed", "bank_unavailable")
