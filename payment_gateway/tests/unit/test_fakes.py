"""The fakes keep the promises the service tests rely on (commit semantics, unique claim)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fakes import FakeStore, FakeUnitOfWorkFactory
from payment_gateway.domain.card import CardSummary
from payment_gateway.domain.payment import Payment, PaymentStatus, Resolution
from payment_gateway.service.ports import (
    DuplicateIdempotencyKey,
    IdempotencyRecord,
    NewPayment,
    StatusTransition,
    StoredCard,
)

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def payment(payment_id: str, merchant_id: str = "m-1") -> Payment:
    return Payment(
        id=payment_id,
        merchant_id=merchant_id,
        status=PaymentStatus.INIT,
        amount=1,
        currency="USD",
        reference=None,
        card=CardSummary("4242", "visa", 12, 2042),
        created_at=T0,
        updated_at=T0,
    )


CARD = StoredCard("c-1", b"token", None, "424242")


async def test_uncommitted_changes_are_discarded(
    uow_factory: FakeUnitOfWorkFactory, store: FakeStore
) -> None:
    async with uow_factory() as uow:
        await uow.payments.add_many([NewPayment(payment("p-1"), CARD, None, T0)])
        assert await uow.payments.get("p-1", "m-1") is not None
        async with uow_factory() as other:
            assert await other.payments.get("p-1", "m-1") is None  # not visible before commit
    assert store.payments == {}


async def test_committed_changes_are_visible(
    uow_factory: FakeUnitOfWorkFactory, store: FakeStore
) -> None:
    async with uow_factory() as uow:
        await uow.payments.add_many([NewPayment(payment("p-1"), CARD, None, T0)])
        await uow.commit()
    async with uow_factory(read_only=True) as uow:
        assert (await uow.payments.get("p-1", "m-1")) == payment("p-1")
        assert await uow.payments.get("p-1", "m-2") is None


async def test_idempotency_claim_is_unique_per_merchant(uow_factory: FakeUnitOfWorkFactory) -> None:
    record = IdempotencyRecord("k", "h")
    async with uow_factory() as uow:
        await uow.payments.add_many([NewPayment(payment("p-1"), CARD, record, T0)])
        await uow.commit()
    async with uow_factory() as uow:
        with pytest.raises(DuplicateIdempotencyKey):
            await uow.payments.add_many([NewPayment(payment("p-2"), CARD, record, T0)])
        await uow.payments.add_many([NewPayment(payment("p-3", "m-2"), CARD, record, T0)])


async def test_transitions_are_guarded(
    uow_factory: FakeUnitOfWorkFactory, store: FakeStore
) -> None:
    def to(status: PaymentStatus) -> StatusTransition:
        return StatusTransition("p-1", "m-1", Resolution(status), T0 + timedelta(seconds=1), None)

    async with uow_factory() as uow:
        await uow.payments.add_many([NewPayment(payment("p-1"), CARD, None, T0)])
        assert await uow.payments.apply_transitions([to(PaymentStatus.FAILED)]) == 1
        assert await uow.payments.apply_transitions([to(PaymentStatus.SUCCEEDED)]) == 0
        await uow.commit()
    assert store.payment("p-1").status is PaymentStatus.FAILED
