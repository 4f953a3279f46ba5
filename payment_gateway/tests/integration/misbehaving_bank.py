"""A real HTTP bank that misbehaves on demand, and the real gateway app wired to it.

Shared by the bank-fault tests of deposits and of captures, voids and refunds: the bank is an
ASGI app served by a real uvicorn in a thread, the gateway its real HTTP adapter, so every
fault crosses a real socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import uvicorn
from asgi_lifespan import LifespanManager
from payment_gateway.main import create_app
from payment_gateway.service.reconcile import Reconciler
from payment_gateway.storage.tables import operations, payments
from sqlalchemy import ColumnElement, update

from .conftest import MERCHANT_ONE, free_port, gateway_settings, payment_body

DEPOSITS = "deposits"
# The bank's collections of operations, by the gateway's route for them.
OPERATION_COLLECTIONS = {"capture": "captures", "cancel": "voids", "refunds": "refunds"}


@dataclass
class MisbehavingBank:
    """Records deposits and operations, then answers the way its modes say.

    `mode` applies to deposits, `operation_mode` to captures, voids and refunds:

    - ``"ok"``: records it and answers 201 with the transaction;
    - a status such as ``"503"``: answers that status and records nothing;
    - ``"recorded_503"``: records it, then answers that status (the answer hides it);
    - ``"slow"``: records it, then answers only after `answer_delay` seconds;
    - ``"garbage"``: records it, then answers 201 with a body that is not JSON;
    - ``"unknown_code"``: records it, then answers 201 with a code the bank contract lacks.

    With `declines_operations`, every operation it records is declined (code ``"100"``).
    """

    mode: str = "ok"
    operation_mode: str = "ok"
    declines_operations: bool = False
    answer_delay: float = 0.0
    recorded: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    posts: Counter[str] = field(default_factory=Counter)  # by reference
    inquiries: Counter[str] = field(default_factory=Counter)  # by reference
    operations_of: dict[str, list[str]] = field(default_factory=dict)  # deposit → references

    def reset(self) -> None:
        self.mode = self.operation_mode = "ok"
        self.declines_operations = False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        segments = scope["path"].strip("/").split("/")  # api, v1, collection[, reference]
        if scope["method"] == "GET":
            collection, reference = segments[2], segments[3]
            self.inquiries[reference] += 1
            found = self.recorded.get((collection, reference))
            await _send(send, 200 if found else 404, orjson.dumps(found or {}))
            return
        request = orjson.loads(body)
        reference = request["reference"]
        self.posts[reference] += 1
        if segments[2] == "deposit":
            mode, collection = self.mode, DEPOSITS
            transaction = _transaction(reference, "succeeded", "0", None)
        else:
            mode, collection = self.operation_mode, segments[2]
            self.operations_of.setdefault(request["deposit_reference"], []).append(reference)
            transaction = self._operation(request)
        if mode.isdigit():
            await _send(send, int(mode), b'{"detail": "no"}')
            return
        self.recorded[(collection, reference)] = transaction  # done at the bank from here on
        await self._answer(send, mode, transaction)

    def _operation(self, request: dict[str, Any]) -> dict[str, Any]:
        if self.declines_operations:
            return _transaction(request["reference"], "failed", "100", "refund_declined")
        return _transaction(request["reference"], "succeeded", "0", None)

    async def _answer(self, send: Any, mode: str, transaction: dict[str, Any]) -> None:
        if mode.startswith("recorded_"):
            await _send(send, int(mode.removeprefix("recorded_")), b'{"detail": "oops"}')
        elif mode == "slow":
            await asyncio.sleep(self.answer_delay)
            await _send(send, 201, orjson.dumps(transaction))
        elif mode == "garbage":
            await _send(send, 201, b"<html>gateway timeout</html>")
        elif mode == "unknown_code":
            await _send(send, 201, orjson.dumps({**transaction, "code": "777"}))
        else:
            await _send(send, 201, orjson.dumps(transaction))


def _transaction(reference: str, status: str, code: str, reason: str | None) -> dict[str, Any]:
    return {
        "transaction_id": f"tx-{reference}",
        "reference": reference,
        "status": status,
        "code": code,
        "reason": reason,
    }


async def _send(send: Any, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@dataclass
class BankServer:
    bank: MisbehavingBank
    url: str


@contextlib.contextmanager
def serving_bank() -> Iterator[BankServer]:
    """A MisbehavingBank on a real uvicorn, in a thread, for as long as the block runs."""
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
    try:
        yield BankServer(bank, f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@dataclass
class Harness:
    client: httpx.AsyncClient
    reconciler: Reconciler
    app: Any

    async def make_due(self, payment_id: str | None = None) -> None:
        """Skip the backoff wait: open payments and pending operations are due now.

        All of them, or only those of `payment_id` (on the session's shared MariaDB database,
        other tests' leftovers would otherwise be claimed too).
        """
        due_now = datetime.now(UTC) - timedelta(seconds=1)
        open_payments: ColumnElement[bool] = payments.c.status.in_(["init", "processing"])
        pending_operations: ColumnElement[bool] = operations.c.status == "pending"
        if payment_id is not None:
            open_payments &= payments.c.id == payment_id
            pending_operations &= operations.c.payment_id == payment_id
        engine = self.app.state.services.uow.engine
        async with engine.begin() as connection:
            await connection.execute(
                update(payments).where(open_payments).values(next_attempt_at=due_now)
            )
            await connection.execute(
                update(operations).where(pending_operations).values(next_attempt_at=due_now)
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


async def pay(harness: Harness, **overrides: object) -> dict[str, Any]:
    started = time.monotonic()
    response = await harness.client.post(
        "/api/v1/payments", json=payment_body(**overrides), headers=MERCHANT_ONE
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
