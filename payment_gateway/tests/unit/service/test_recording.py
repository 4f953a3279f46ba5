"""The one write path: every status change is written by the recorder and announced once."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from fakes import FakeBank, FakeClock, FakeStore, FakeUnitOfWorkFactory
from payment_gateway.domain.bank import BankFault
from payment_gateway.domain.events import PaymentStatusChanged
from payment_gateway.domain.merchant import Merchant
from payment_gateway.domain.payment import PaymentStatus, Resolution
from payment_gateway.service import recording
from payment_gateway.service.group_commit import GroupCommitRecorder
from payment_gateway.service.ports import StatusTransition
from payment_gateway.service.recording import TransactionalRecorder

from ..conftest import MakePaymentService, MakeReconciler, MakeRequest

Announced = list[PaymentStatusChanged]


@pytest.fixture
def announced(monkeypatch: pytest.MonkeyPatch) -> Announced:
    changes: Announced = []
    monkeypatch.setattr(recording, "announce", changes.append)
    return changes


async def test_request_and_reconciler_changes_are_each_announced_once(
    make_payment_service: MakePaymentService,
    make_reconciler: MakeReconciler,
    merchant: Merchant,
    make_request: MakeRequest,
    clock: FakeClock,
    announced: Announced,
) -> None:
    bank = FakeBank(fault=BankFault.UNCERTAIN)  # charged, answer lost: processing
    created = await make_payment_service(bank).create(merchant, make_request(), None)
    bank.fault = None
    clock.advance(60)
    await make_reconciler(bank).reconcile_due_payments()

    payment_id = created.payment.id
    assert [(c.payment_id, c.status, c.by) for c in announced] == [
        (payment_id, PaymentStatus.INIT, "request"),
        (payment_id, PaymentStatus.PROCESSING, "request"),
        (payment_id, PaymentStatus.SUCCEEDED, "reconciler"),
    ]
    assert announced[0].amount == 1000
    assert announced[2].code == "0"


async def test_a_transition_that_does_not_apply_announces_nothing(
    make_payment_service: MakePaymentService,
    bank: FakeBank,
    merchant: Merchant,
    make_request: MakeRequest,
    uow_factory: FakeUnitOfWorkFactory,
    clock: FakeClock,
    announced: Announced,
) -> None:
    created = await make_payment_service(bank).create(merchant, make_request(), None)
    assert created.payment.status is PaymentStatus.SUCCEEDED
    announced.clear()
    late = StatusTransition(
        created.payment.id, merchant.id, Resolution(PaymentStatus.FAILED), clock(), None
    )
    assert not await TransactionalRecorder(uow_factory).record_transition(late)
    assert announced == []


async def test_a_batch_is_announced_only_when_all_of_it_commits(
    make_payment_service: MakePaymentService,
    merchant: Merchant,
    make_request: MakeRequest,
    uow_factory: FakeUnitOfWorkFactory,
    store: FakeStore,
    clock: FakeClock,
    announced: Announced,
) -> None:
    bank = FakeBank(fault=BankFault.UNCERTAIN)
    service = make_payment_service(bank)
    payments = [(await service.create(merchant, make_request(), None)).payment for _ in range(3)]
    announced.clear()
    now = clock() + timedelta(seconds=1)
    settle = [
        StatusTransition(
            p.id, merchant.id, Resolution(PaymentStatus.SUCCEEDED, code="0"), now, None
        )
        for p in payments
    ]
    recorder = TransactionalRecorder(uow_factory)
    # One of them settled meanwhile: the batch applies nothing, and nothing is announced.
    assert await recorder.record_transition(settle[1])
    announced.clear()
    commits = store.commits
    assert not await recorder.record_all_transitions(settle)
    assert announced == []
    assert store.commits == commits
    assert store.payment(payments[0].id).status is PaymentStatus.PROCESSING

    # Group commit falls back to one by one: each caller hears its own, each change once.
    group = GroupCommitRecorder(recorder)
    results = await asyncio.gather(*(group.record_transition(t) for t in settle))
    assert results == [True, False, True]
    assert sorted(c.payment_id for c in announced) == sorted([payments[0].id, payments[2].id])
