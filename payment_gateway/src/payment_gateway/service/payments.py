"""Use cases: create a payment (exactly once per idempotency key) and read one."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

import structlog

from payment_gateway import audit
from payment_gateway.domain.bank import resolve_deposit
from payment_gateway.domain.card import CardSummary, card_brand
from payment_gateway.domain.merchant import Merchant
from payment_gateway.domain.payment import (
    OPEN_STATUSES,
    DeclineReason,
    Payment,
    PaymentRequest,
    PaymentStatus,
    Resolution,
)
from payment_gateway.logging_setup import current_request_id
from payment_gateway.service.clock import Clock, utc_now
from payment_gateway.service.errors import (
    NotFound,
    StorageUnavailable,
)
from payment_gateway.service.idempotency import ensure_replayable, fingerprint
from payment_gateway.service.ids import new_id
from payment_gateway.service.ports import (
    BankAdapter,
    CardEncryptor,
    DuplicateIdempotencyKey,
    IdempotencyRecord,
    NewPayment,
    PaymentRecorder,
    StatusTransition,
    StoredCard,
    UnitOfWorkFactory,
)
from payment_gateway.service.recording import TransactionalRecorder
from payment_gateway.service.storage_retry import retrying_storage

log = structlog.get_logger(__name__)

_STORAGE_RETRIES = 2
T = TypeVar("T")

# PCI DSS lets the first six and last four digits be kept; for shorter (12-14 digit) cards
# those ten digits plus the Luhn check would nearly reveal the number, so no BIN then.
MIN_PAN_LENGTH_FOR_BIN = 15


@dataclass(frozen=True, slots=True)
class PaymentPolicy:
    """The timing rules the use cases follow (from settings)."""

    idempotency_ttl: timedelta
    in_flight: timedelta  # how long an `init` payment may still have its request running
    first_reconcile_delay: timedelta
    # Past this age a payment is not sent any more: its bank call could then outlast the
    # in-flight window, inside which retries get 409 and the reconciler leaves it alone.
    max_send_delay: timedelta
    authorization_ttl: timedelta = timedelta(days=7)  # uncaptured authorizations expire


@dataclass(frozen=True, slots=True)
class CreatePaymentResult:
    payment: Payment
    replayed: bool


class PaymentService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        bank: BankAdapter,
        vault: CardEncryptor,
        request_hash_key: bytes,
        policy: PaymentPolicy,
        clock: Clock = utc_now,
        recorder: PaymentRecorder | None = None,
    ) -> None:
        self._uow = uow
        # Production passes a recorder that commits concurrent payments together.
        self._recorder = recorder or TransactionalRecorder(uow)
        self._bank = bank
        self._vault = vault
        self._hash_key = request_hash_key
        self._policy = policy
        self._clock = clock

    def request_hash(self, request: PaymentRequest) -> str:
        return fingerprint(self._hash_key, request.fingerprint_material())

    async def create(
        self, merchant: Merchant, request: PaymentRequest, idempotency_key: str | None
    ) -> CreatePaymentResult:
        idempotency = (
            IdempotencyRecord(idempotency_key, self.request_hash(request))
            if idempotency_key is not None
            else None
        )
        payment = await self._record(merchant, request, idempotency)
        if isinstance(payment, CreatePaymentResult):
            return payment  # an earlier request with the same key

        if self._clock() - payment.created_at > self._policy.max_send_delay:
            # Recording took so long that the bank call could outlast the in-flight window,
            # when retries and the reconciler treat the payment as abandoned. Send nothing.
            log.warning("payment_not_sent_too_late", payment_id=payment.id)
            resolution = Resolution(
                PaymentStatus.FAILED, decline_reason=DeclineReason.BANK_UNAVAILABLE
            )
        else:
            resolution = resolve_deposit(
                await self._bank.deposit(payment.id, request), capture=request.capture
            )
        return CreatePaymentResult(await self._apply(merchant, payment, resolution), replayed=False)

    async def _record(
        self, merchant: Merchant, request: PaymentRequest, idempotency: IdempotencyRecord | None
    ) -> Payment | CreatePaymentResult:
        """Commit the card and the payment (`init`) before the bank is called.

        A crash after this leaves a row the reconciler resolves. A lost database connection is
        retried with fresh ids (nothing has been sent yet, so nothing can be charged twice).
        """
        unconfirmed: set[str] = set()  # ids whose commit may have succeeded unseen

        async def attempt() -> Payment | CreatePaymentResult:
            while True:  # again only when an expired claim was released for this payment
                payment, card = self._new_payment(merchant, request)
                new = NewPayment(
                    payment,
                    card,
                    idempotency,
                    payment.created_at + self._policy.in_flight,
                    request_id=current_request_id(),
                )
                try:
                    await self._recorder.record(new)
                    return payment
                except StorageUnavailable:
                    unconfirmed.add(payment.id)
                    raise
                except DuplicateIdempotencyKey:
                    assert idempotency is not None
                    if unconfirmed:
                        # An earlier attempt's commit went through though its answer was lost:
                        # the key holds our own payment, which still has to be sent.
                        own = await self._keyed_payment(merchant, idempotency.key)
                        if own is not None and own.id in unconfirmed:
                            return own
                    replay = await self._replay(merchant, idempotency)
                    if replay is not None:
                        return CreatePaymentResult(replay, replayed=True)

        return await _retrying_storage(attempt)

    def _new_payment(
        self, merchant: Merchant, request: PaymentRequest
    ) -> tuple[Payment, StoredCard]:
        now = self._clock()
        payment = Payment(
            id=new_id(),
            merchant_id=merchant.id,
            status=PaymentStatus.INIT,
            amount=request.amount,
            currency=request.currency,
            reference=request.reference,
            card=CardSummary(
                last4=request.pan[-4:],
                brand=card_brand(request.pan),
                expiry_month=request.expiry_month,
                expiry_year=request.expiry_year,
            ),
            created_at=now,
            updated_at=now,
            capture=request.capture,
        )
        card = StoredCard(
            id=new_id(),
            pan_encrypted=self._vault.encrypt(request.pan),
            holder_name_encrypted=(
                self._vault.encrypt(request.holder_name) if request.holder_name else None
            ),
            bin=request.pan[:6] if len(request.pan) >= MIN_PAN_LENGTH_FOR_BIN else None,
        )
        return payment, card

    async def _apply(self, merchant: Merchant, payment: Payment, resolution: Resolution) -> Payment:
        """Record what the bank said. The card may be charged by now: never answer 500 here."""
        done = self._clock()
        if resolution.status in OPEN_STATUSES:
            next_attempt_at: datetime | None = done + self._policy.first_reconcile_delay
        elif resolution.status is PaymentStatus.AUTHORIZED:
            # An authorization's next look is its expiry: canceled if not captured by then.
            next_attempt_at = payment.created_at + self._policy.authorization_ttl
        else:
            next_attempt_at = None
        transition = StatusTransition(
            payment.id,
            merchant.id,
            resolution,
            done,
            next_attempt_at,
            request_id=current_request_id(),
            payment=payment,
        )
        try:
            if await _retrying_storage(lambda: self._recorder.record_transition(transition)):
                payment.apply(resolution, done)
                return payment
            # Another path (the reconciler) got there first: show what it recorded.
            return await _retrying_storage(lambda: self._read(merchant, payment.id)) or payment
        except Exception:
            # The card may be charged: whatever went wrong, never answer 500 now. The row
            # stays `init`, and the reconciler learns the outcome from the bank.
            log.exception("payment_outcome_not_recorded", payment_id=payment.id)
            return payment

    async def _read(self, merchant: Merchant, payment_id: str) -> Payment | None:
        async with self._uow(read_only=True, single_statement=True) as uow:
            return await uow.payments.get(payment_id, merchant.id)

    async def _keyed_payment(self, merchant: Merchant, key: str) -> Payment | None:
        async with self._uow(read_only=True, single_statement=True) as uow:
            found = await uow.payments.find_by_idempotency_key(merchant.id, key)
        return None if found is None else found.payment

    async def _replay(self, merchant: Merchant, idempotency: IdempotencyRecord) -> Payment | None:
        """The payment an idempotency key already stands for, or None once that key expired."""
        now = self._clock()
        async with self._uow() as uow:
            found = await uow.payments.find_by_idempotency_key(merchant.id, idempotency.key)
            if found is None:
                # Released between our insert and this read: let the caller claim it again.
                return None
            payment = found.payment
            if payment.created_at < now - self._policy.idempotency_ttl:
                await uow.payments.release_idempotency_key(
                    payment.id, idempotency.key, now - self._policy.idempotency_ttl
                )
                await uow.commit()
                return None
        ensure_replayable(
            found.request_hash,
            idempotency.request_hash,
            in_flight=payment.status is PaymentStatus.INIT
            and payment.created_at > now - self._policy.in_flight,
        )
        return payment

    async def get(self, merchant: Merchant, payment_id: str) -> Payment:
        payment = await self._read(merchant, payment_id)
        audit.record(
            "payment_read", merchant_id=merchant.id, payment_id=payment_id, found=bool(payment)
        )
        if payment is None:
            raise NotFound(f"no payment {payment_id}")
        return payment


async def _retrying_storage(write: Callable[[], Awaitable[T]]) -> T:
    """Run ``write``, again after a conflict or a short pause when the database could not be
    reached.

    Only for work that is safe to repeat: a guarded transition, a read, or an insert with
    fresh ids (nothing has been sent to the bank yet).
    """
    return await retrying_storage(write, unavailable_retries=_STORAGE_RETRIES)
