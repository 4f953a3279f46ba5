"""The gateway against a misbehaving bank: a real HTTP server in the test, the real adapter.

Each fault must leave the payment `failed` or `processing` (never `init`, never a `500`), and
the reconciler must then bring every `processing` payment to the bank's truth, with one
deposit per payment.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from .conftest import free_port
from .misbehaving_bank import (
    BankServer,
    Harness,
    pay,
    running_gateway,
    serving_bank,
    status_of,
)


@pytest.fixture(scope="module")
def bank_server() -> Iterator[BankServer]:
    with serving_bank() as server:
        yield server


@pytest.fixture
async def harness(
    database_url: str, tmp_path: Path, bank_server: BankServer
) -> AsyncIterator[Harness]:
    bank_server.bank.reset()
    async with running_gateway(
        database_url, tmp_path, bank_server.url, reconcile_not_found_grace_seconds=3600
    ) as gateway:
        yield gateway


@pytest.mark.parametrize("mode", ["slow", "garbage", "unknown_code"])
async def test_charged_but_no_usable_answer_is_processing_then_reconciled(
    harness: Harness, bank_server: BankServer, mode: str
) -> None:
    bank_server.bank.mode = mode
    bank_server.bank.answer_delay = 10.0  # far longer than the gateway's 0.5 s timeout

    payment = await pay(harness)

    assert payment["status"] == "processing"
    assert payment["decline_reason"] is None
    await harness.make_due()
    report = await harness.reconciler.reconcile_due_payments()
    assert report.resolved >= 1
    settled = await status_of(harness, payment["id"])
    assert (settled["status"], settled["code"]) == ("succeeded", "0")
    assert settled["tracking_id"] == f"tx-{payment['id']}"
    assert bank_server.bank.posts[payment["id"]] == 1  # reconciling never re-charges


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
