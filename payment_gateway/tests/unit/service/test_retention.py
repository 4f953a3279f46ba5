"""Card data retention: ciphertexts of old terminal payments erased, in bounded batches."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from fakes import FakeBank, FakeClock, FakeStore, FakeUnitOfWorkFactory
from payment_gateway.domain.card import CardSummary
from payment_gateway.domain.payment import Payment, PaymentStatus
from payment_gateway.service.ports import NewPayment, StoredCard
from payment_gateway.service.retention import CardDataEraser, RetentionPolicy

from ..conftest import MakeReconciler

RETENTION = timedelta(days=30)


async def add_payment(
    uow_factory: FakeUnitOfWorkFactory,
    clock: FakeClock,
    name: str,
    status: PaymentStatus,
    age: timedelta,
) -> None:
    created = clock() - age
    payment = Payment(
        id=name,
        merchant_id="m-1",
        status=status,
        amount=1000,
        currency="USD",
        reference=None,
        card=CardSummary("4242", "visa", 12, 2042),
        created_at=created,
        updated_at=created,
    )
    card = StoredCard(f"card-{name}", b"pan-token", b"holder-token", "424242")
    async with uow_factory() as uow:
        await uow.payments.add_many([NewPayment(payment, card, None, created)])
        await uow.commit()


def erased(store: FakeStore, name: str) -> bool:
    card = store.payments[name].card
    return card.pan_encrypted == b"" and card.holder_name_encrypted is None


async def test_only_old_terminal_payments_lose_their_card_data(
    uow_factory: FakeUnitOfWorkFactory, store: FakeStore, clock: FakeClock
) -> None:
    old = RETENTION + timedelta(seconds=1)
    await add_payment(uow_factory, clock, "old-succeeded", PaymentStatus.SUCCEEDED, old)
    await add_payment(uow_factory, clock, "old-failed", PaymentStatus.FAILED, old)
    await add_payment(uow_factory, clock, "old-processing", PaymentStatus.PROCESSING, old)
    await add_payment(uow_factory, clock, "old-init", PaymentStatus.INIT, old)
    await add_payment(
        uow_factory, clock, "young-succeeded", PaymentStatus.SUCCEEDED, RETENTION - timedelta(1)
    )
    summaries = {name: row.payment.card for name, row in store.payments.items()}

    eraser = CardDataEraser(uow_factory, RetentionPolicy(RETENTION), clock=clock)
    assert await eraser.erase_expired() == 2

    assert {name for name in store.payments if erased(store, name)} == {
        "old-succeeded",
        "old-failed",
    }
    assert {name: row.payment.card for name, row in store.payments.items()} == summaries
    assert await eraser.erase_expired() == 0  # nothing left to erase


async def test_erases_in_bounded_batches_and_leaves_the_rest_for_the_next_call(
    uow_factory: FakeUnitOfWorkFactory, store: FakeStore, clock: FakeClock
) -> None:
    for index in range(5):
        await add_payment(
            uow_factory,
            clock,
            f"p-{index}",
            PaymentStatus.SUCCEEDED,
            RETENTION * 2 - timedelta(index),
        )
    eraser = CardDataEraser(
        uow_factory, RetentionPolicy(RETENTION, batch_size=2, max_batches=2), clock=clock
    )
    commits = store.commits
    assert await eraser.erase_expired() == 4
    assert store.commits - commits == 2  # one transaction per batch
    assert [name for name in store.payments if not erased(store, name)] == ["p-4"]  # the youngest
    assert await eraser.erase_expired() == 1


class RecordingEraser(CardDataEraser):
    """Erases nothing; records that it was called."""

    def __init__(self, uow_factory: FakeUnitOfWorkFactory) -> None:
        super().__init__(uow_factory, RetentionPolicy(RETENTION))
        self.called = asyncio.Event()

    async def erase_expired(self) -> int:
        self.called.set()
        return 0


async def test_the_reconciler_loop_runs_the_eraser(
    make_reconciler: MakeReconciler, uow_factory: FakeUnitOfWorkFactory
) -> None:
    eraser = RecordingEraser(uow_factory)
    task = asyncio.create_task(make_reconciler(FakeBank()).run_forever(eraser))
    try:
        await asyncio.wait_for(eraser.called.wait(), timeout=5)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
