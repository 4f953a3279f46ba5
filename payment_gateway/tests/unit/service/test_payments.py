"""PaymentService over in-memory fakes: outcomes, write-before-call, faults, idempotency."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import pytest
from fakes import FakeBank, FakeClock, FakeStore, FakeUnitOfWorkFactory, GatedBank
from payment_gateway.domain.bank import BankAnswer, BankFault
from payment_gateway.domain.merchant import Merchant
from payment_gateway.domain.payment import PaymentRequest, PaymentStatus
from payment_gateway.service.errors import IdempotencyKeyReused, NotFound, RequestInProgress
from payment_gateway.service.payments import PaymentPolicy, PaymentService
from payment_gateway.service.ports import StatusTransition
from payment_gateway.service.recording import TransactionalRecorder
from payment_gateway.storage.vault import CardVault

from ..conftest import MakePaymentService, MakeRequest, RequestFields

APPROVED = "4242424242424242"
DECLINED = "4000000000000002"
PENDING = "4000000000009995"
UNSUPPORTED = "5555555555554444"


# --- outcomes ------------------------------------------------------------------------------


async def test_success(
    payment_service: PaymentService, bank: FakeBank, merchant: Merchant, make_request: MakeRequest
) -> None:
    outcome = await payment_service.create(merchant, make_request(pan=APPROVED), None)
    payment = outcome.payment
    assert not outcome.replayed
    assert payment.status is PaymentStatus.SUCCEEDED
    assert payment.code == "0"
    assert payment.decline_reason is None
    assert payment.tracking_id == bank.answers[payment.id].transaction_id
    assert payment.tracking_id
    assert payment.merchant_id == merchant.id
    assert (payment.amount, payment.currency, payment.reference) == (1000, "USD", "order-1234")
    assert payment.card.last4 == "4242"
    assert payment.card.brand == "visa"
    assert payment.card.masked_number == "**** **** **** 4242"
    assert [pid for pid, _ in bank.deposits] == [payment.id]


@pytest.mark.parametrize(
    ("pan", "reason"), [(DECLINED, "insufficient_funds"), (UNSUPPORTED, "card_not_supported")]
)
async def test_decline(
    payment_service: PaymentService,
    bank: FakeBank,
    merchant: Merchant,
    make_request: MakeRequest,
    pan: str,
    reason: str,
) -> None:
    payment = (await payment_service.create(merchant, make_request(pan=pan), None)).payment
    assert payment.status is PaymentStatus.FAILED
    assert payment.code == "100"
    assert payment.decline_reason == reason
    assert payment.tracking_id == bank.answers[payment.id].transaction_id


async def test_pending(
    payment_service: PaymentService, bank: FakeBank, merchant: Merchant, make_request: MakeRequest
) -> None:
    payment = (await payment_service.create(merchant, make_request(pan=PENDING), None)).payment
    assert payment.status is PaymentStatus.PROCESSING
    assert payment.code == "200"
    assert payment.decline_reason is None
    assert payment.tracking_id == bank.answers[payment.id].transaction_id


async def test_the_stored_row_matches_what_create_returns(
    payment_service: PaymentService, store: FakeStore, merchant: Merchant, make_request: MakeRequest
) -> None:
    for pan in (APPROVED, DECLINED, PENDING):
        payment = (await payment_service.create(merchant, make_request(pan=pan), None)).payment
        assert store.payment(payment.id) == payment
        assert await payment_service.get(merchant, payment.id) == payment


async def test_open_payments_are_scheduled_for_reconciliation(
    payment_service: PaymentService,
    store: FakeStore,
    clock: FakeClock,
    payment_policy: PaymentPolicy,
    merchant: Merchant,
    make_request: MakeRequest,
) -> None:
    done = (await payment_service.create(merchant, make_request(pan=APPROVED), None)).payment
    pending = (await payment_service.create(merchant, make_request(pan=PENDING), None)).payment
    assert store.payments[done.id].next_attempt_at is None
    assert (
        store.payments[pending.id].next_attempt_at == clock() + payment_policy.first_reconcile_delay
    )


# --- write before the bank call ------------------------------------------------------------


class InspectingBank(FakeBank):
    """Records what the committed store held when the deposit arrived."""

    def __init__(self, store: FakeStore) -> None:
        super().__init__()
        self.store = store
        self.seen: list[tuple[PaymentStatus | None, str | None]] = []

    async def deposit(
        self, payment_id: str, request: PaymentRequest, authentication_id: str | None = None
    ) -> BankAnswer | BankFault:
        row = self.store.payments.get(payment_id)
        self.seen.append((row.payment.status, row.card.bin) if row else (None, None))
        return await super().deposit(payment_id, request, authentication_id)


async def test_payment_row_is_committed_before_the_bank_is_called(
    make_payment_service: MakePaymentService,
    store: FakeStore,
    merchant: Merchant,
    make_request: MakeRequest,
) -> None:
    bank = InspectingBank(store)
    service = make_payment_service(bank)
    payment = (await service.create(merchant, make_request(), "key-1")).payment
    assert bank.seen == [(PaymentStatus.INIT, "424242")]
    assert store.payment(payment.id).status is PaymentStatus.SUCCEEDED


async def test_card_is_stored_encrypted_and_cvv_not_at_all(
    payment_service: PaymentService,
    store: FakeStore,
    vault: CardVault,
    merchant: Merchant,
    make_request: MakeRequest,
) -> None:
    request = make_request(cvv="9876", holder_name="Jane Roe")
    payment = (await payment_service.create(merchant, request, "key-1")).payment
    row = store.payments[payment.id]
    assert vault.decrypt(row.card.pan_encrypted) == request.pan
    assert row.card.holder_name_encrypted is not None
    assert vault.decrypt(row.card.holder_name_encrypted) == "Jane Roe"
    assert row.card.bin == "424242"
    everything = repr(store)
    for secret in (request.pan, "9876", "Jane Roe"):
        assert secret not in everything


async def test_no_holder_name_stores_none(
    payment_service: PaymentService, store: FakeStore, merchant: Merchant, make_request: MakeRequest
) -> None:
    payment = (await payment_service.create(merchant, make_request(holder_name=None), None)).payment
    assert store.payments[payment.id].card.holder_name_encrypted is None


# --- bank faults ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "status", "reason"),
    [
        (BankFault.NOT_SENT, PaymentStatus.FAILED, "bank_unavailable"),
        (BankFault.REJECTED, PaymentStatus.FAILED, "bank_rejected"),
        (BankFault.UNCERTAIN, PaymentStatus.PROCESSING, None),
    ],
)
async def test_bank_faults(
    make_payment_service: MakePaymentService,
    store: FakeStore,
    merchant: Merchant,
    make_request: MakeRequest,
    fault: BankFault,
    status: PaymentStatus,
    reason: str | None,
) -> None:
    service = make_payment_service(FakeBank(fault=fault))
    payment = (await service.create(merchant, make_request(), None)).payment
    assert payment.status is status
    assert payment.decline_reason == reason
    assert payment.code is None
    assert store.payment(payment.id).status is status
    row = store.payments[payment.id]
    assert (row.next_attempt_at is None) is status.is_terminal


async def test_reconciler_got_there_first(
    make_payment_service: MakePaymentService,
    store: FakeStore,
    merchant: Merchant,
    make_request: MakeRequest,
) -> None:
    """If the row turned terminal while the bank call ran, create shows what was recorded."""

    class RacingBank(FakeBank):
        async def deposit(
            self, payment_id: str, request: PaymentRequest, authentication_id: str | None = None
        ) -> Any:
            answer = await super().deposit(payment_id, request, authentication_id)
            row = store.payments[payment_id]
            row.payment.status = PaymentStatus.FAILED
            row.payment.decline_reason = "recorded_elsewhere"
            return answer

    service = make_payment_service(RacingBank())
    payment = (await service.create(merchant, make_request(pan=APPROVED), None)).payment
    assert payment.status is PaymentStatus.FAILED
    assert payment.decline_reason == "recorded_elsewhere"
    assert store.payment(payment.id).status is PaymentStatus.FAILED


# --- idempotency ---------------------------------------------------------------------------


async def test_same_key_same_content_replays(
    payment_service: PaymentService, bank: FakeBank, merchant: Merchant, make_request: MakeRequest
) -> None:
    first = await payment_service.create(merchant, make_request(), "key-1")
    second = await payment_service.create(merchant, make_request(), "key-1")
    assert not first.replayed
    assert second.replayed
    assert second.payment == first.payment
    assert len(bank.deposits) == 1


async def test_replay_shows_the_payment_as_it_stands_now(
    payment_service: PaymentService,
    bank: FakeBank,
    store: FakeStore,
    merchant: Merchant,
    make_request: MakeRequest,
) -> None:
    first = await payment_service.create(merchant, make_request(pan=PENDING), "key-1")
    assert first.payment.status is PaymentStatus.PROCESSING
    store.payments[first.payment.id].payment.status = PaymentStatus.SUCCEEDED
    again = await payment_service.create(merchant, make_request(pan=PENDING), "key-1")
    assert again.replayed
    assert again.payment.status is PaymentStatus.SUCCEEDED
    assert len(bank.deposits) == 1


@pytest.mark.parametrize(
    "change",
    [
        {"amount": 1001},
        {"currency": "EUR"},
        {"reference": "order-9"},
        {"reference": None},
        {"pan": "4000000000000002"},
        {"expiry_month": 11},
        {"expiry_year": 2043},
        {"holder_name": "Someone Else"},
    ],
)
async def test_same_key_different_content_is_rejected(
    payment_service: PaymentService,
    bank: FakeBank,
    merchant: Merchant,
    make_request: MakeRequest,
    change: RequestFields,
) -> None:
    await payment_service.create(merchant, make_request(), "key-1")
    with pytest.raises(IdempotencyKeyReused) as info:
        await payment_service.create(merchant, make_request(**change), "key-1")
    assert info.value.status_code == 422
    assert [e.field for e in info.value.errors] == ["Idempotency-Key"]
    assert len(bank.deposits) == 1


async def test_in_flight_duplicate_gets_request_in_progress(
    make_payment_service: MakePaymentService,
    store: FakeStore,
    clock: FakeClock,
    merchant: Merchant,
    make_request: MakeRequest,
) -> None:
    bank = GatedBank()
    service = make_payment_service(bank)
    first = asyncio.create_task(service.create(merchant, make_request(), "key-1"))
    await asyncio.wait_for(bank.entered.wait(), 1)
    clock.advance(1)
    with pytest.raises(RequestInProgress) as info:
        await service.create(merchant, make_request(), "key-1")
    assert info.value.status_code == 409
    # Different content is a 422 even while the first is running.
    with pytest.raises(IdempotencyKeyReused):
        await service.create(merchant, make_request(amount=5), "key-1")
    bank.gate.set()
    outcome = await asyncio.wait_for(first, 1)
    assert outcome.payment.status is PaymentStatus.SUCCEEDED
    assert len(bank.deposits) == 1
    assert len(store.payments) == 1


async def test_init_older_than_in_flight_replays_instead_of_409(
    make_payment_service: MakePaymentService,
    store: FakeStore,
    clock: FakeClock,
    payment_policy: PaymentPolicy,
    merchant: Merchant,
    make_request: MakeRequest,
) -> None:
    bank = GatedBank()
    service = make_payment_service(bank)
    first = asyncio.create_task(service.create(merchant, make_request(), "key-1"))
    await asyncio.wait_for(bank.entered.wait(), 1)
    clock.advance(payment_policy.in_flight.total_seconds() + 1)
    again = await service.create(merchant, make_request(), "key-1")
    assert again.replayed
    assert again.payment.status is PaymentStatus.INIT
    bank.gate.set()
    await asyncio.wait_for(first, 1)
    assert len(bank.deposits) == 1


async def test_many_concurrent_duplicates_deposit_once(
    make_payment_service: MakePaymentService,
    store: FakeStore,
    merchant: Merchant,
    make_request: MakeRequest,
) -> None:
    bank = GatedBank()
    service = make_payment_service(bank)
    tasks = [
        asyncio.create_task(service.create(merchant, make_request(), "key-1")) for _ in range(20)
    ]
    await asyncio.wait_for(bank.entered.wait(), 1)
    bank.gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    created = [r for r in results if not isinstance(r, BaseException) and not r.replayed]
    others = [r for r in results if isinstance(r, BaseException)]
    assert len(created) == 1
    assert all(isinstance(e, RequestInProgress) for e in others)
    assert len(bank.deposits) == 1
    assert len(store.payments) == 1


async def test_expired_key_starts_a_new_payment(
    payment_service: PaymentService,
    bank: FakeBank,
    store: FakeStore,
    clock: FakeClock,
    payment_policy: PaymentPolicy,
    merchant: Merchant,
    make_request: MakeRequest,
) -> None:
    first = await payment_service.create(merchant, make_request(), "key-1")
    clock.advance(payment_policy.idempotency_ttl.total_seconds() + 1)
    second = await payment_service.create(merchant, make_request(), "key-1")
    assert not second.replayed
    assert second.payment.id != first.payment.id
    assert [pid for pid, _ in bank.deposits] == [first.payment.id, second.payment.id]
    assert store.payments[first.payment.id].idempotency_key is None
    assert store.payments[second.payment.id].idempotency_key == "key-1"
    # and the key now stands for the new payment
    third = await payment_service.create(merchant, make_request(), "key-1")
    assert third.replayed
    assert third.payment.id == second.payment.id


async def test_expired_key_with_different_content_is_a_new_payment(
    payment_service: PaymentService,
    bank: FakeBank,
    clock: FakeClock,
    payment_policy: PaymentPolicy,
    merchant: Merchant,
    make_request: MakeRequest,
) -> None:
    await payment_service.create(merchant, make_request(), "key-1")
    clock.advance(payment_policy.idempotency_ttl.total_seconds() + 1)
    second = await payment_service.create(merchant, make_request(amount=77), "key-1")
    assert not second.replayed
    assert second.payment.amount == 77
    assert len(bank.deposits) == 2


async def test_key_just_inside_the_ttl_still_replays(
    payment_service: PaymentService,
    bank: FakeBank,
    clock: FakeClock,
    payment_policy: PaymentPolicy,
    merchant: Merchant,
    make_request: MakeRequest,
) -> None:
    first = await payment_service.create(merchant, make_request(), "key-1")
    clock.advance(payment_policy.idempotency_ttl.total_seconds() - 1)
    again = await payment_service.create(merchant, make_request(), "key-1")
    assert again.replayed
    assert again.payment.id == first.payment.id
    assert len(bank.deposits) == 1


async def test_keys_are_per_merchant(
    payment_service: PaymentService,
    bank: FakeBank,
    merchant: Merchant,
    other_merchant: Merchant,
    make_request: MakeRequest,
) -> None:
    one = await payment_service.create(merchant, make_request(), "shared-key")
    two = await payment_service.create(other_merchant, make_request(), "shared-key")
    assert not one.replayed
    assert not two.replayed
    assert one.payment.id != two.payment.id
    assert two.payment.merchant_id == other_merchant.id
    assert len(bank.deposits) == 2


async def test_no_key_means_no_deduplication(
    payment_service: PaymentService, bank: FakeBank, merchant: Merchant, make_request: MakeRequest
) -> None:
    one = await payment_service.create(merchant, make_request(), None)
    two = await payment_service.create(merchant, make_request(), None)
    assert one.payment.id != two.payment.id
    assert len(bank.deposits) == 2


# --- reading -------------------------------------------------------------------------------


async def test_get_own_payment(
    payment_service: PaymentService, merchant: Merchant, make_request: MakeRequest
) -> None:
    created = (await payment_service.create(merchant, make_request(), None)).payment
    assert await payment_service.get(merchant, created.id) == created


async def test_get_another_merchants_payment_is_not_found(
    payment_service: PaymentService,
    merchant: Merchant,
    other_merchant: Merchant,
    make_request: MakeRequest,
) -> None:
    created = (await payment_service.create(merchant, make_request(), None)).payment
    with pytest.raises(NotFound) as info:
        await payment_service.get(other_merchant, created.id)
    assert info.value.status_code == 404


async def test_get_unknown_payment_is_not_found(
    payment_service: PaymentService, merchant: Merchant
) -> None:
    with pytest.raises(NotFound):
        await payment_service.get(merchant, "00000000-0000-0000-0000-000000000000")


# --- request hash --------------------------------------------------------------------------


def test_request_hash_is_keyed_and_hides_the_pan(
    make_payment_service: MakePaymentService, bank: FakeBank, make_request: MakeRequest
) -> None:
    request = make_request(cvv="987")
    one = make_payment_service(bank, hash_key=b"key-one")
    two = make_payment_service(bank, hash_key=b"key-two")
    assert one.request_hash(request) == one.request_hash(make_request(cvv="987"))
    assert one.request_hash(request) != two.request_hash(request)
    assert one.request_hash(request) != one.request_hash(make_request(amount=1001))
    digest = one.request_hash(request)
    assert len(digest) == 64
    int(digest, 16)  # a hex digest, not the material
    assert request.pan not in digest
    # keyed: not the plain hash of the content, which anyone could recompute from a PAN guess
    assert digest != hashlib.sha256(request.fingerprint_material()).hexdigest()


def test_request_hash_distinguishes_field_boundaries(
    payment_service: PaymentService, make_request: MakeRequest
) -> None:
    """Different content must never hash the same (docs/design.md, Exactly once: 422).

    The fingerprint joins the fields with ``\\x1f`` without escaping it, and holder_name and
    reference are free strings that may contain it: moving text across the boundary between
    them gives the same material for two different requests.
    """
    one = make_request(holder_name="J\x1f1000\x1fUSD", amount=1000, currency="USD", reference="x")
    two = make_request(holder_name="J", amount=1000, currency="USD", reference="1000\x1fUSD\x1fx")
    assert one != two
    assert payment_service.request_hash(one) != payment_service.request_hash(two)


def test_the_cvv_is_in_no_fingerprint(
    payment_service: PaymentService, make_request: MakeRequest
) -> None:
    """PCI DSS 3.3.1.2: a hash of 3-4 digits can be brute-forced, so none is derived at all."""
    hashes = {payment_service.request_hash(make_request(cvv=f"{cvv:03d}")) for cvv in range(50)}
    assert len(hashes) == 1
    assert b"987" not in make_request(cvv="987").fingerprint_material()


async def test_a_retry_that_changes_only_the_cvv_is_the_same_request(
    payment_service: PaymentService, bank: FakeBank, merchant: Merchant, make_request: MakeRequest
) -> None:
    first = await payment_service.create(merchant, make_request(cvv="123"), "key-cvv")
    retry = await payment_service.create(merchant, make_request(cvv="9876"), "key-cvv")
    assert retry.replayed
    assert retry.payment.id == first.payment.id
    assert len(bank.deposits) == 1


async def test_a_claim_whose_fingerprint_was_erased_replays_its_payment(
    payment_service: PaymentService,
    bank: FakeBank,
    store: FakeStore,
    merchant: Merchant,
    make_request: MakeRequest,
) -> None:
    """Migration 0002 erased the fingerprints that covered the CVV: never charge twice then."""
    first = await payment_service.create(merchant, make_request(), "key-old")
    store.payments[first.payment.id].request_hash = None
    retry = await payment_service.create(merchant, make_request(), "key-old")
    assert retry.replayed
    assert retry.payment.id == first.payment.id
    assert len(bank.deposits) == 1


async def test_stored_request_hash_is_the_keyed_hash(
    payment_service: PaymentService, store: FakeStore, merchant: Merchant, make_request: MakeRequest
) -> None:
    request = make_request()
    payment = (await payment_service.create(merchant, request, "key-1")).payment
    stored = store.payments[payment.id].request_hash
    assert stored == payment_service.request_hash(request)
    assert request.pan not in stored


# --- slow storage ----------------------------------------------------------------------------


async def test_a_payment_recorded_too_late_is_not_sent_to_the_bank(
    uow_factory: FakeUnitOfWorkFactory,
    vault: CardVault,
    payment_policy: PaymentPolicy,
    clock: FakeClock,
    bank: FakeBank,
    merchant: Merchant,
    make_request: MakeRequest,
) -> None:
    """If recording took longer than the reconciler's "never sent" grace, sending is unsafe."""

    class SlowToCommit:
        def __init__(self) -> None:
            self.calls = 0

        def __call__(self, **kwargs: Any) -> Any:
            uow: Any = uow_factory(**kwargs)  # Any: its commit is replaced below
            original_commit = uow.commit
            self.calls += 1

            async def commit() -> None:
                if self.calls == 1:
                    clock.advance(payment_policy.max_send_delay.total_seconds() + 1)
                await original_commit()

            uow.commit = commit
            return uow

        async def ping(self) -> None:
            await uow_factory.ping()

    service = PaymentService(SlowToCommit(), bank, vault, b"k", payment_policy, clock=clock)

    outcome = await service.create(merchant, make_request(pan=APPROVED), None)

    assert bank.deposits == []
    assert outcome.payment.status is PaymentStatus.FAILED
    assert outcome.payment.decline_reason == "bank_unavailable"


async def test_a_commit_whose_answer_was_lost_is_still_sent_once(
    uow_factory: FakeUnitOfWorkFactory,
    vault: CardVault,
    payment_policy: PaymentPolicy,
    clock: FakeClock,
    bank: FakeBank,
    merchant: Merchant,
    make_request: MakeRequest,
) -> None:
    """The first insert commits, but the connection drops before saying so."""
    from payment_gateway.service.errors import StorageUnavailable

    class LosesTheFirstCommitsAnswer:
        def __init__(self) -> None:
            self.lost = False

        def __call__(self, **kwargs: Any) -> Any:
            uow: Any = uow_factory(**kwargs)  # Any: its commit is replaced below
            if kwargs or self.lost:
                return uow
            real_commit = uow.commit

            async def commit() -> None:
                await real_commit()
                self.lost = True
                raise StorageUnavailable("the database connection was lost")

            uow.commit = commit
            return uow

        async def ping(self) -> None:
            await uow_factory.ping()

    service = PaymentService(
        LosesTheFirstCommitsAnswer(), bank, vault, b"k", payment_policy, clock=clock
    )

    outcome = await service.create(merchant, make_request(pan=APPROVED), "lost-ack")

    assert outcome.payment.status is PaymentStatus.SUCCEEDED
    assert not outcome.replayed
    assert [pid for pid, _ in bank.deposits] == [outcome.payment.id]


async def test_an_unexpected_error_recording_the_outcome_is_never_a_500(
    uow_factory: FakeUnitOfWorkFactory,
    vault: CardVault,
    payment_policy: PaymentPolicy,
    clock: FakeClock,
    bank: FakeBank,
    merchant: Merchant,
    make_request: MakeRequest,
) -> None:
    """After the bank call the card may be charged: the merchant gets the payment, not a 500."""

    class BrokenOutcomes(TransactionalRecorder):
        async def record_transition(self, transition: StatusTransition) -> bool:
            raise RuntimeError("a bug in the outcome write")

    service = PaymentService(
        uow_factory,
        bank,
        vault,
        b"k",
        payment_policy,
        clock=clock,
        recorder=BrokenOutcomes(uow_factory),
    )

    outcome = await service.create(merchant, make_request(pan=APPROVED), None)

    assert len(bank.deposits) == 1
    # Left `init` for the reconciler, which asks the bank what happened.
    assert outcome.payment.status is PaymentStatus.INIT
    stored = await service.get(merchant, outcome.payment.id)
    assert stored.status is PaymentStatus.INIT
