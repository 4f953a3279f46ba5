"""Captures, voids and refunds against a misbehaving bank: a real HTTP server, the real adapter.

The bank-fault table of docs/design.md, The payment flow, applies to each operation: nothing
sent fails it as `bank_unavailable`; a refusal (a 4xx other than 408 and 429) fails it as
`bank_rejected`; any other fault leaves it `pending`, and the reconciler settles it by asking
the bank, never by sending it again. A failed capture or void leaves the authorization
standing; a failed refund gives its amount back to what may still be refunded.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from payment_gateway.storage.tables import operations
from sqlalchemy import select

from .conftest import MERCHANT_ONE, free_port
from .misbehaving_bank import (
    OPERATION_COLLECTIONS,
    BankServer,
    Harness,
    MisbehavingBank,
    pay,
    running_gateway,
    serving_bank,
    status_of,
)

PAYMENTS = "/api/v1/payments"
AMOUNT = 1000


@dataclass(frozen=True)
class Kind:
    """One kind of operation, and what it does to the payment it acts on."""

    route: str  # the gateway's: POST /api/v1/payments/{id}/{route}
    on_captured_payment: bool  # refunds act on a captured payment, the others on authorizations
    body: dict[str, Any] | None
    done: dict[str, Any]  # the payment's fields once the operation succeeded
    untouched: dict[str, Any]  # … while it is pending, and once it failed

    @property
    def collection(self) -> str:
        return OPERATION_COLLECTIONS[self.route]


CAPTURE = Kind(
    "capture",
    on_captured_payment=False,
    body={"amount": 600},
    done={"status": "succeeded", "amount_captured": 600, "amount_refunded": 0},
    untouched={"status": "authorized", "amount_captured": 0, "amount_refunded": 0},
)
CANCEL = Kind(
    "cancel",
    on_captured_payment=False,
    body=None,
    done={
        "status": "canceled",
        "amount_captured": 0,
        "cancellation_reason": "requested_by_merchant",
    },
    untouched={"status": "authorized", "amount_captured": 0, "cancellation_reason": None},
)
REFUND = Kind(
    "refunds",
    on_captured_payment=True,
    body={"amount": 300},
    done={"status": "succeeded", "amount_captured": AMOUNT, "amount_refunded": 300},
    untouched={"status": "succeeded", "amount_captured": AMOUNT, "amount_refunded": 0},
)
each_kind = pytest.mark.parametrize(
    "kind", [CAPTURE, CANCEL, REFUND], ids=["capture", "cancel", "refund"]
)


@pytest.fixture(scope="module")
def bank_server() -> Iterator[BankServer]:
    with serving_bank() as server:
        yield server


@pytest.fixture
def bank(bank_server: BankServer) -> MisbehavingBank:
    bank_server.bank.reset()
    bank_server.bank.answer_delay = 10.0  # far longer than the gateway's 0.5 s timeout
    return bank_server.bank


@pytest.fixture
async def harness(
    database_url: str, tmp_path: Path, bank_server: BankServer, bank: MisbehavingBank
) -> AsyncIterator[Harness]:
    async with running_gateway(
        database_url, tmp_path, bank_server.url, reconcile_not_found_grace_seconds=3600
    ) as gateway:
        yield gateway


# -- steps


async def payment_for(harness: Harness, kind: Kind) -> str:
    """A payment the operation may act on: captured for a refund, else authorized."""
    payment = await pay(harness, amount=AMOUNT, capture=kind.on_captured_payment)
    assert payment["status"] == ("succeeded" if kind.on_captured_payment else "authorized")
    payment_id: str = payment["id"]
    return payment_id


async def operate(
    harness: Harness, kind: Kind, payment_id: str, body: dict[str, Any] | None = None
) -> httpx.Response:
    started = time.monotonic()
    response = await harness.client.post(
        f"{PAYMENTS}/{payment_id}/{kind.route}", json=body or kind.body, headers=MERCHANT_ONE
    )
    # However slow the bank, the merchant hears back after the 0.5 s timeout (loose bound).
    assert time.monotonic() - started < 5.0
    return response


def assert_answer(
    kind: Kind, response: httpx.Response, status: str, failure_reason: str | None = None
) -> None:
    """Refunds: 201 with the refund. Captures and voids: 200 done, 202 pending, 402 failed."""
    if kind is REFUND:
        assert response.status_code == 201, response.text
        refund = response.json()
        assert (refund["status"], refund["failure_reason"]) == (status, failure_reason)
        assert response.headers["location"] == f"/api/v1/refunds/{refund['id']}"
        return
    if status == "failed":
        assert response.status_code == 402, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        problem = response.json()
        assert problem["type"].endswith("bank-declined")
        assert f": {failure_reason}; nothing changed" in problem["detail"]
        return
    assert response.status_code == (200 if status == "succeeded" else 202), response.text
    expected = kind.done if status == "succeeded" else kind.untouched
    assert_fields(response.json(), expected)


def assert_fields(document: dict[str, Any], expected: dict[str, Any]) -> None:
    assert {name: document[name] for name in expected} == expected


async def assert_payment(harness: Harness, payment_id: str, expected: dict[str, Any]) -> None:
    assert_fields(await status_of(harness, payment_id), expected)


def the_only_operation(bank: MisbehavingBank, payment_id: str) -> str:
    """The reference of the one operation request the bank got for this payment."""
    references = bank.operations_of.get(payment_id, [])
    assert len(references) == 1, references
    return references[0]


async def stored_operation(harness: Harness, reference: str) -> tuple[str, str | None]:
    """The operation's status and failure reason as the gateway recorded them."""
    engine = harness.app.state.services.uow.engine
    async with engine.connect() as connection:
        row = (
            await connection.execute(
                select(operations.c.status, operations.c.failure_reason).where(
                    operations.c.id == reference
                )
            )
        ).one()
    return row.status, row.failure_reason


async def assert_operation(
    harness: Harness, kind: Kind, reference: str, status: str, failure_reason: str | None = None
) -> None:
    assert await stored_operation(harness, reference) == (status, failure_reason)
    if kind is REFUND:  # and the merchant reads it so
        response = await harness.client.get(f"/api/v1/refunds/{reference}", headers=MERCHANT_ONE)
        refund = response.json()
        assert (refund["status"], refund["failure_reason"]) == (status, failure_reason)


async def assert_held(harness: Harness, kind: Kind, payment_id: str) -> None:
    """While the operation is pending, its claim on the payment keeps others out."""
    if kind is REFUND:  # its amount is reserved: the whole amount is more than is left
        response = await operate(harness, kind, payment_id, {"amount": AMOUNT})
        assert response.status_code == 422, response.text
        assert "left to refund (700)" in response.json()["errors"][0]["message"]
    else:  # one capture or void at a time
        response = await operate(harness, CAPTURE, payment_id)
        assert response.status_code == 409, response.text


async def reconcile(harness: Harness, payment_id: str) -> None:
    """Make the payment's pending operations due, and reconcile until nothing else is due."""
    await harness.make_due(payment_id)
    while (await harness.reconciler.reconcile_due_operations()).claimed:
        pass


async def assert_can_be_tried_again(
    harness: Harness, bank: MisbehavingBank, kind: Kind, payment_id: str
) -> None:
    """After a failure: the authorization stands, or the refund's amount is free again."""
    bank.reset()
    if kind is REFUND:  # all of it: nothing of the failed refund is still reserved
        response = await operate(harness, kind, payment_id, {"amount": AMOUNT})
        assert_answer(kind, response, "succeeded")
        await assert_payment(harness, payment_id, {"amount_refunded": AMOUNT})
        return
    assert_answer(kind, await operate(harness, kind, payment_id), "succeeded")
    await assert_payment(harness, payment_id, kind.done)


# -- the bank answered


@each_kind
async def test_an_answered_operation_is_done_at_once(
    harness: Harness, bank: MisbehavingBank, kind: Kind
) -> None:
    payment_id = await payment_for(harness, kind)

    assert_answer(kind, await operate(harness, kind, payment_id), "succeeded")

    await assert_payment(harness, payment_id, kind.done)
    reference = the_only_operation(bank, payment_id)
    assert (bank.posts[reference], bank.inquiries[reference]) == (1, 0)
    assert bank.recorded[(kind.collection, reference)]["code"] == "0"


@each_kind
async def test_a_declined_operation_fails_and_changes_nothing(
    harness: Harness, bank: MisbehavingBank, kind: Kind
) -> None:
    payment_id = await payment_for(harness, kind)
    bank.declines_operations = True

    assert_answer(kind, await operate(harness, kind, payment_id), "failed", "refund_declined")

    await assert_payment(harness, payment_id, kind.untouched)
    reference = the_only_operation(bank, payment_id)
    await assert_operation(harness, kind, reference, "failed", "refund_declined")
    await assert_can_be_tried_again(harness, bank, kind, payment_id)


# -- nothing sent, or refused: failed at once, nothing to reconcile


@each_kind
@pytest.mark.parametrize("status", ["400", "404", "409", "422"])
async def test_a_refused_operation_fails_as_bank_rejected(
    harness: Harness, bank: MisbehavingBank, kind: Kind, status: str
) -> None:
    payment_id = await payment_for(harness, kind)
    bank.operation_mode = status

    assert_answer(kind, await operate(harness, kind, payment_id), "failed", "bank_rejected")

    await assert_payment(harness, payment_id, kind.untouched)
    reference = the_only_operation(bank, payment_id)
    await assert_operation(harness, kind, reference, "failed", "bank_rejected")
    await reconcile(harness, payment_id)
    assert bank.inquiries[reference] == 0  # a refusal is an answer: nothing to ask about
    await assert_can_be_tried_again(harness, bank, kind, payment_id)


@contextlib.contextmanager
def nothing_listening() -> Iterator[str]:
    yield f"http://127.0.0.1:{free_port()}"  # the connection is refused


@contextlib.contextmanager
def never_accepting() -> Iterator[str]:
    """A bank whose accept queue is full: the connection attempt times out."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)  # room for one connection, which the next line takes
        port = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)):
            yield f"http://127.0.0.1:{port}"


@each_kind
@pytest.mark.parametrize("dead_bank", [nothing_listening, never_accepting])
async def test_an_unreachable_bank_fails_the_operation_as_bank_unavailable(
    database_url: str,
    tmp_path: Path,
    bank_server: BankServer,
    bank: MisbehavingBank,
    kind: Kind,
    dead_bank: Callable[[], contextlib.AbstractContextManager[str]],
) -> None:
    async with running_gateway(database_url, tmp_path / "a", bank_server.url) as harness:
        payment_id = await payment_for(harness, kind)
        # A second gateway on the same database, whose bank cannot be reached.
        with dead_bank() as dead_bank_url:
            async with running_gateway(database_url, tmp_path / "b", dead_bank_url) as cut_off:
                response = await operate(cut_off, kind, payment_id)
        assert_answer(kind, response, "failed", "bank_unavailable")

        await assert_payment(harness, payment_id, kind.untouched)
        assert payment_id not in bank.operations_of  # nothing reached the bank
        await assert_can_be_tried_again(harness, bank, kind, payment_id)


# -- sent, but no usable answer: pending, then settled by one inquiry


# Each of these hides an operation the bank did carry out.
UNCERTAIN_BUT_DONE = [
    "slow",  # the read times out
    "garbage",
    "unknown_code",
    "recorded_408",
    "recorded_429",
    "recorded_500",
    "recorded_503",
]


@each_kind
@pytest.mark.parametrize("mode", UNCERTAIN_BUT_DONE)
async def test_an_uncertain_operation_is_pending_until_the_reconciler_asks_the_bank(
    harness: Harness, bank: MisbehavingBank, kind: Kind, mode: str
) -> None:
    payment_id = await payment_for(harness, kind)
    bank.operation_mode = mode

    assert_answer(kind, await operate(harness, kind, payment_id), "pending")

    await assert_payment(harness, payment_id, kind.untouched)
    await assert_held(harness, kind, payment_id)
    reference = the_only_operation(bank, payment_id)
    await reconcile(harness, payment_id)
    await assert_operation(harness, kind, reference, "succeeded")
    await assert_payment(harness, payment_id, kind.done)
    # Settled by asking once; the operation itself was never sent again.
    assert (bank.posts[reference], bank.inquiries[reference]) == (1, 1)


@each_kind
async def test_an_uncertain_operation_the_bank_declined_fails_once_asked(
    harness: Harness, bank: MisbehavingBank, kind: Kind
) -> None:
    payment_id = await payment_for(harness, kind)
    bank.operation_mode, bank.declines_operations = "garbage", True

    assert_answer(kind, await operate(harness, kind, payment_id), "pending")
    reference = the_only_operation(bank, payment_id)
    await reconcile(harness, payment_id)

    await assert_operation(harness, kind, reference, "failed", "refund_declined")
    await assert_payment(harness, payment_id, kind.untouched)
    assert (bank.posts[reference], bank.inquiries[reference]) == (1, 1)
    await assert_can_be_tried_again(harness, bank, kind, payment_id)


@each_kind
@pytest.mark.parametrize("status", ["408", "429", "500", "503"])
async def test_an_operation_the_bank_has_no_record_of_stays_pending_within_the_grace_period(
    harness: Harness, bank: MisbehavingBank, kind: Kind, status: str
) -> None:
    payment_id = await payment_for(harness, kind)
    bank.operation_mode = status  # answered before recording anything

    assert_answer(kind, await operate(harness, kind, payment_id), "pending")
    reference = the_only_operation(bank, payment_id)
    await reconcile(harness, payment_id)

    # The bank's 404 may just mean "not arrived yet": still pending, still holding its claim.
    await assert_operation(harness, kind, reference, "pending")
    await assert_payment(harness, payment_id, kind.untouched)
    await assert_held(harness, kind, payment_id)
    assert (bank.posts[reference], bank.inquiries[reference]) == (1, 1)


@each_kind
async def test_a_bank_404_after_the_grace_period_fails_the_operation(
    database_url: str, tmp_path: Path, bank_server: BankServer, bank: MisbehavingBank, kind: Kind
) -> None:
    async with running_gateway(
        database_url, tmp_path, bank_server.url, reconcile_not_found_grace_seconds=0
    ) as harness:
        payment_id = await payment_for(harness, kind)
        bank.operation_mode = "503"
        assert_answer(kind, await operate(harness, kind, payment_id), "pending")
        reference = the_only_operation(bank, payment_id)

        await reconcile(harness, payment_id)

        await assert_operation(harness, kind, reference, "failed", "bank_unavailable")
        await assert_payment(harness, payment_id, kind.untouched)
        assert (bank.posts[reference], bank.inquiries[reference]) == (1, 1)
        await assert_can_be_tried_again(harness, bank, kind, payment_id)
