"""The reconciler over in-memory fakes: it learns outcomes by inquiry, never charges again."""

from __future__ import annotations

from typing import Any, Unpack

import pytest
from fakes import FakeBank, FakeClock, FakePaymentRepository, FakeStore, FakeUnitOfWorkFactory
from payment_gateway.domain.bank import BankAnswer, BankFault
from payment_gateway.domain.merchant import Merchant
from payment_gateway.domain.payment import PaymentRequest, PaymentStatus
from payment_gateway.service.operations import PaymentOperations
from payment_gateway.service.payments import PaymentPolicy, PaymentService
from payment_gateway.service.reconcile import ReconcilePolicy
from payment_gateway.service.recording import TransactionalRecorder
from payment_gateway.storage.vault import CardVault

from ..conftest import (
    OPERATION_POLICY,
    MakePaymentService,
    MakeReconciler,
    MakeRequest,
    RequestFields,
)

PENDING = "4000000000009995"
LONG_WAIT = 10_000.0  # past every backoff, lease and grace period in the policies


class CountingBank(FakeBank):
    """A FakeBank that also counts inquiries; ``inquiry_fault`` makes inquiries fail."""

    def __init__(self, inquiry_fault: BankFault | None = None) -> None:
        super().__init__()
        self.inquiries: list[str] = []
        self.inquiry_fault = inquiry_fault

    async def inquire(self, payment_id: str) -> BankAnswer | BankFault | None:
        self.inquiries.append(payment_id)
        if self.inquiry_fault is not None:
            return self.inquiry_fault
        return await super().inquire(payment_id)


class LostAnswerBank(FakeBank):
    """Deposits never reach this bank's books, and every answer is lost on the way back."""

    async def deposit(
        self, payment_id: str, request: PaymentRequest, authentication_id: str | None = None
    ) -> BankAnswer | BankFault:
        return BankFault.UNCERTAIN


class ProcessKilled(Exception):
    """The gateway process died while the bank call was in flight."""


class DyingBank(CountingBank):
    """The bank records the deposit, but the gateway dies before it reads the answer."""

    async def deposit(
        self, payment_id: str, request: PaymentRequest, authentication_id: str | None = None
    ) -> BankAnswer | BankFault:
        await super().deposit(payment_id, request, authentication_id)
        raise ProcessKilled


async def create(
    service: PaymentService,
    merchant: Merchant,
    make_request: MakeRequest,
    **kw: Unpack[RequestFields],
) -> str:
    return (await service.create(merchant, make_request(**kw), None)).payment.id


async def test_processing_payment_succeeds_after_the_bank_settles(
    make_payment_service: MakePaymentService,
    make_reconciler: MakeReconciler,
    store: FakeStore,
    clock: FakeClock,
    merchant: Merchant,
    make_request: MakeRequest,
) -> None:
    bank = CountingBank()
    payment_id = await create(make_payment_service(bank), merchant, make_request, pan=PENDING)
    reconciler = make_reconciler(bank)

    clock.advance(LONG_WAIT)
    report = await reconciler.reconcile_due_payments()
    assert (report.claimed, report.resolved) == (1, 0)
    assert store.payment(payment_id).status is PaymentStatus.PROCESSING

    bank.settle(payment_id)
    clock.advance(LONG_WAIT)
    report = await reconciler.reconcile_due_payments()
    assert (report.claimed, report.resolved) == (1, 1)
    payment = store.payment(payment_id)
    assert payment.status is PaymentStatus.SUCCEEDED
    assert payment.code == "0"
    assert payment.tracking_id == bank.answers[payment_id].transaction_id
    assert payment.updated_at == clock()
    assert store.payments[payment_id].next_attempt_at is None
    assert len(bank.deposits) == 1

    clock.advance(LONG_WAIT)
    report = await reconciler.reconcile_due_payments()
    assert report.claimed == 0
    assert bank.inquiries == [payment_id, payment_id]


async def test_processing_payment_declined_after_settling(
    make_payment_service: MakePaymentService,
    make_reconciler: MakeReconciler,
    store: FakeStore,
    clock: FakeClock,
    merchant: Merchant,
    make_request: MakeRequest,
) -> None:
    bank = FakeBank()
    payment_id = await create(make_payment_service(bank), merchant, make_request, pan=PENDING)
    bank.answers[payment_id] = BankAnswer("100", "insufficient_funds", "tx-1")
    clock.advance(LONG_WAIT)
    await make_reconciler(bank).reconcile_due_payments()
    payment = store.payment(payment_id)
    assert payment.status is PaymentStatus.FAILED
    assert (payment.code, payment.decline_reason) == ("100", "insufficient_funds")


async def test_not_due_yet_is_left_alone(
    make_payment_service: MakePaymentService,
    make_reconciler: MakeReconciler,
    store: FakeStore,
    merchant: Merchant,
    make_request: MakeRequest,
) -> None:
    bank = CountingBank()
    payment_id = await create(make_payment_service(bank), merchant, make_request, pan=PENDING)
    bank.settle(payment_id)
    report = await make_reconciler(bank).reconcile_due_payments()
    assert report.claimed == 0
    assert bank.inquiries == []
    assert store.payment(payment_id).status is PaymentStatus.PROCESSING


async def test_bank_404_within_the_grace_stays_open_then_fails(
    make_payment_service: MakePaymentService,
    make_reconciler: MakeReconciler,
    store: FakeStore,
    clock: FakeClock,
    payment_policy: PaymentPolicy,
    reconcile_policy: ReconcilePolicy,
    merchant: Merchant,
    make_request: MakeRequest,
) -> None:
    payment_id = await create(make_payment_service(LostAnswerBank()), merchant, make_request)
    assert store.payment(payment_id).status is PaymentStatus.PROCESSING
    bank = CountingBank()  # has no record of the deposit: answers 404
    reconciler = make_reconciler(bank)
    grace = reconcile_policy.not_found_grace.total_seconds()

    clock.advance(payment_policy.first_reconcile_delay.total_seconds())
    assert clock.now - store.payment(payment_id).created_at < reconcile_policy.not_found_grace
    report = await reconciler.reconcile_due_payments()
    assert (report.claimed, report.resolved) == (1, 0)
    assert bank.inquiries == [payment_id]
    assert store.payment(payment_id).status is PaymentStatus.PROCESSING

    clock.advance(grace)
    report = await reconciler.reconcile_due_payments()
    assert (report.claimed, report.resolved) == (1, 1)
    payment = store.payment(payment_id)
    assert payment.status is PaymentStatus.FAILED
    assert payment.decline_reason == "bank_unavailable"
    assert payment.code is None
    assert bank.deposits == []  # it never charges


@pytest.mark.parametrize("fault", list(BankFault))
async def test_bank_fault_on_inquiry_leaves_the_payment_open(
    make_payment_service: MakePaymentService,
    make_reconciler: MakeReconciler,
    store: FakeStore,
    clock: FakeClock,
    merchant: Merchant,
    make_request: MakeRequest,
    fault: BankFault,
) -> None:
    payment_id = await create(make_payment_service(LostAnswerBank()), merchant, make_request)
    bank = CountingBank(inquiry_fault=fault)
    reconciler = make_reconciler(bank)
    for _ in range(3):
        clock.advance(LONG_WAIT)  # well past the not-found grace too
        report = await reconciler.reconcile_due_payments()
        assert (report.claimed, report.resolved) == (1, 0)
    assert store.payment(payment_id).status is PaymentStatus.PROCESSING
    assert len(bank.inquiries) == 3
    assert bank.deposits == []


@pytest.mark.parametrize("code", ["200", "999"])
async def test_non_terminal_answer_leaves_the_payment_open(
    make_payment_service: MakePaymentService,
    make_reconciler: MakeReconciler,
    store: FakeStore,
    clock: FakeClock,
    merchant: Merchant,
    make_request: MakeRequest,
    code: str,
) -> None:
    payment_id = await create(make_payment_service(LostAnswerBank()), merchant, make_request)
    bank = FakeBank(answers={payment_id: BankAnswer(code, None, "tx")})
    clock.advance(LONG_WAIT)
    report = await make_reconciler(bank).reconcile_due_payments()
    assert report.resolved == 0
    assert store.payment(payment_id).status is PaymentStatus.PROCESSING


async def test_terminal_payments_are_never_touched(
    make_payment_service: MakePaymentService,
    make_reconciler: MakeReconciler,
    store: FakeStore,
    clock: FakeClock,
    merchant: Merchant,
    make_request: MakeRequest,
) -> None:
    bank = CountingBank()
    service = make_payment_service(bank)
    succeeded = await create(service, merchant, make_request)
    failed = await create(service, merchant, make_request, pan="4000000000000002")
    before = {pid: store.payment(pid) for pid in (succeeded, failed)}
    # The bank now claims the opposite of what was recorded.
    bank.answers[succeeded] = BankAnswer("100", "insufficient_funds", "tx-x")
    bank.answers[failed] = BankAnswer("0", None, "tx-y")
    clock.advance(LONG_WAIT)
    report = await make_reconciler(bank).reconcile_due_payments()
    assert (report.claimed, report.resolved) == (0, 0)
    assert bank.inquiries == []
    assert {pid: store.payment(pid) for pid in before} == before


async def test_payment_turning_terminal_during_the_inquiry_is_not_overwritten(
    make_payment_service: MakePaymentService,
    make_reconciler: MakeReconciler,
    store: FakeStore,
    clock: FakeClock,
    merchant: Merchant,
    make_request: MakeRequest,
) -> None:
    """Claimed while processing; the request finishes it as failed while we ask the bank."""
    payment_id = await create(make_payment_service(LostAnswerBank()), merchant, make_request)

    class RacingBank(FakeBank):
        async def inquire(self, pid: str) -> BankAnswer | BankFault | None:
            row = store.payments[pid]
            row.payment.status = PaymentStatus.FAILED
            row.payment.decline_reason = "insufficient_funds"
            return BankAnswer("0", None, "tx-late")

    clock.advance(LONG_WAIT)
    report = await make_reconciler(RacingBank()).reconcile_due_payments()
    assert report.resolved == 0
    payment = store.payment(payment_id)
    assert payment.status is PaymentStatus.FAILED
    assert payment.decline_reason == "insufficient_funds"


async def test_dead_request_is_resolved_by_inquiry_not_a_second_charge(
    make_payment_service: MakePaymentService,
    make_reconciler: MakeReconciler,
    store: FakeStore,
    clock: FakeClock,
    payment_policy: PaymentPolicy,
    merchant: Merchant,
    make_request: MakeRequest,
) -> None:
    bank = DyingBank()
    with pytest.raises(ProcessKilled):
        await make_payment_service(bank).create(merchant, make_request(), "key-1")
    (payment_id,) = store.payments
    assert store.payment(payment_id).status is PaymentStatus.INIT
    assert len(bank.deposits) == 1
    reconciler = make_reconciler(bank)

    # While the request might still be running, the reconciler leaves it to the request.
    clock.advance(payment_policy.in_flight.total_seconds() - 1)
    report = await reconciler.reconcile_due_payments()
    assert report.claimed == 0

    clock.advance(2)  # next_attempt_at (created + in_flight) has passed
    report = await reconciler.reconcile_due_payments()
    assert (report.claimed, report.resolved) == (1, 1)
    payment = store.payment(payment_id)
    assert payment.status is PaymentStatus.SUCCEEDED
    assert payment.code == "0"
    assert payment.tracking_id == bank.answers[payment_id].transaction_id
    assert bank.inquiries == [payment_id]
    assert len(bank.deposits) == 1  # no second charge


async def test_dead_request_the_bank_never_saw_fails_after_the_grace(
    make_payment_service: MakePaymentService,
    make_reconciler: MakeReconciler,
    store: FakeStore,
    clock: FakeClock,
    merchant: Merchant,
    make_request: MakeRequest,
) -> None:
    class DiesBeforeSending(FakeBank):
        async def deposit(
            self, payment_id: str, request: PaymentRequest, authentication_id: str | None = None
        ) -> Any:
            raise ProcessKilled

    with pytest.raises(ProcessKilled):
        await make_payment_service(DiesBeforeSending()).create(merchant, make_request(), None)
    (payment_id,) = store.payments
    bank = CountingBank()
    clock.advance(LONG_WAIT)
    await make_reconciler(bank).reconcile_due_payments()
    payment = store.payment(payment_id)
    assert payment.status is PaymentStatus.FAILED
    assert payment.decline_reason == "bank_unavailable"
    assert bank.deposits == []


async def test_claims_push_the_next_attempt_into_the_future(
    make_payment_service: MakePaymentService,
    make_reconciler: MakeReconciler,
    store: FakeStore,
    clock: FakeClock,
    merchant: Merchant,
    make_request: MakeRequest,
) -> None:
    """Two passes at the same instant: the second finds nothing due (one claim at a time)."""
    payment_id = await create(make_payment_service(LostAnswerBank()), merchant, make_request)
    bank = CountingBank(inquiry_fault=BankFault.UNCERTAIN)
    clock.advance(LONG_WAIT)
    first = await make_reconciler(bank).reconcile_due_payments()
    second = await make_reconciler(bank).reconcile_due_payments()
    assert (first.claimed, second.claimed) == (1, 0)
    next_attempt_at = store.payments[payment_id].next_attempt_at
    assert next_attempt_at is not None
    assert next_attempt_at > clock()


async def test_release_expired_idempotency_keys(
    make_payment_service: MakePaymentService,
    make_reconciler: MakeReconciler,
    store: FakeStore,
    clock: FakeClock,
    reconcile_policy: ReconcilePolicy,
    merchant: Merchant,
    make_request: MakeRequest,
) -> None:
    service = make_payment_service(FakeBank())
    old = (await service.create(merchant, make_request(), "old-key")).payment.id
    clock.advance(reconcile_policy.idempotency_ttl.total_seconds())
    young = (await service.create(merchant, make_request(), "young-key")).payment.id
    clock.advance(1)
    assert await make_reconciler(FakeBank()).release_expired_idempotency_keys() == 1
    assert store.payments[old].idempotency_key is None
    assert store.payments[young].idempotency_key == "young-key"


async def test_dead_request_the_bank_reports_pending_leaves_init(
    make_payment_service: MakePaymentService,
    make_reconciler: MakeReconciler,
    store: FakeStore,
    clock: FakeClock,
    merchant: Merchant,
    make_request: MakeRequest,
) -> None:
    """Once the reconciler has reached the bank, the payment is no longer ``init``.

    docs/design.md, Exactly once: a payment is never stuck in ``init``; it "stays
    ``processing`` only until the reconciler reaches the bank". A dead request whose deposit
    the bank reports as pending (code "200") should read ``processing`` with code "200", not
    ``init``.
    """
    bank = DyingBank()
    with pytest.raises(ProcessKilled):
        await make_payment_service(bank).create(merchant, make_request(pan=PENDING), None)
    (payment_id,) = store.payments
    clock.advance(LONG_WAIT)
    await make_reconciler(bank).reconcile_due_payments()
    payment = store.payment(payment_id)
    assert payment.status is PaymentStatus.PROCESSING
    assert payment.code == "200"
    assert len(bank.deposits) == 1
    # and it is still looked at until the bank settles
    bank.settle(payment_id)
    clock.advance(LONG_WAIT)
    await make_reconciler(bank).reconcile_due_payments()
    assert store.payment(payment_id).status is PaymentStatus.SUCCEEDED


async def test_claims_no_more_than_it_can_ask_about_at_once(
    uow_factory: FakeUnitOfWorkFactory,
    reconcile_policy: ReconcilePolicy,
    clock: FakeClock,
    vault: CardVault,
    payment_policy: PaymentPolicy,
    merchant: Merchant,
    make_request: MakeRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each claim's lease lasts one inquiry: a replica must not sit on claims it cannot serve."""
    from payment_gateway.service.reconcile import Reconciler

    bank = FakeBank(fault=BankFault.UNCERTAIN)  # charged, answer lost: processing
    service = PaymentService(uow_factory, bank, vault, b"k", payment_policy, clock=clock)
    for _ in range(10):
        await service.create(merchant, make_request(pan="4242424242424242"), None)
    bank.fault = None
    clock.advance(60)

    claim_sizes: list[int] = []
    repository = FakePaymentRepository
    original_claim = repository.claim_due

    async def recorded_claim(self: Any, *args: Any) -> Any:
        due = await original_claim(self, *args)
        claim_sizes.append(len(due))
        return due

    monkeypatch.setattr(repository, "claim_due", recorded_claim)
    recorder = TransactionalRecorder(uow_factory)
    operations = PaymentOperations(uow_factory, recorder, bank, b"k", OPERATION_POLICY)
    reconciler = Reconciler(
        uow_factory,
        recorder,
        bank,
        operations,
        service,
        reconcile_policy,
        clock=clock,
        concurrency=3,
    )
    report = await reconciler.reconcile_due_payments()

    assert (report.claimed, report.resolved) == (10, 10)
    assert max(claim_sizes) <= 3
    assert sum(claim_sizes) == 10
