"""Use cases: create a payment (exactly once per idempotency key) and read one."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TypeVar
from urllib.parse import quote

import structlog

from payment_gateway import audit
from payment_gateway.domain.bank import BankFault, resolve_deposit
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
from payment_gateway.domain.three_d_secure import (
    AuthenticationResult,
    AuthenticationStatus,
    ThreeDSecure,
    expired,
    resolve_authentication,
)
from payment_gateway.domain.urls import browser_url_problem
from payment_gateway.logging_setup import current_request_id
from payment_gateway.service.clock import Clock, utc_now
from payment_gateway.service.errors import (
    FieldError,
    InvalidRequest,
    NotFound,
    StorageUnavailable,
)
from payment_gateway.service.idempotency import ensure_replayable, fingerprint
from payment_gateway.service.ids import new_id
from payment_gateway.service.ports import (
    BankAdapter,
    DuplicateIdempotencyKey,
    IdempotencyRecord,
    NewPayment,
    PaymentRecorder,
    SecretCipher,
    StatusTransition,
    StoredCard,
    UnitOfWorkFactory,
)
from payment_gateway.service.recording import TransactionalRecorder
from payment_gateway.service.storage_retry import retrying_storage

log = structlog.get_logger(__name__)

_STORAGE_RETRIES = 2
# The card of a payment waiting for its challenge was erased (CARD_DATA_RETENTION_DAYS
# shorter than the challenge's deadline): nothing left to charge.
CARD_DATA_ERASED = "card_data_erased"
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
    # How long a shopper has for a 3-D Secure challenge before the payment fails.
    challenge_ttl: timedelta = timedelta(minutes=15)
    public_url: str = "http://127.0.0.1:8080"  # the gateway as browsers reach it
    https_return_urls: bool = False  # production: a shopper is only ever sent to https

    def authentication_return_url(self, payment_id: str) -> str:
        """Where the bank sends the shopper after a challenge (api/three_d_secure.py)."""
        return f"{self.public_url}{THREE_D_SECURE_RETURN_PATH}{quote(payment_id, safe='')}"


THREE_D_SECURE_RETURN_PATH = "/3ds/return/"


@dataclass(frozen=True, slots=True)
class CreatePaymentResult:
    payment: Payment
    replayed: bool


class PaymentService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        bank: BankAdapter,
        vault: SecretCipher,
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
        self._check_return_url(request)
        idempotency = (
            IdempotencyRecord(idempotency_key, self.request_hash(request))
            if idempotency_key is not None
            else None
        )
        payment = await self._record(merchant, request, idempotency)
        if isinstance(payment, CreatePaymentResult):
            return payment  # an earlier request with the same key

        resolution = await self._charge(payment, request, payment.created_at)
        return CreatePaymentResult(await self._apply(payment, resolution), replayed=False)

    def _check_return_url(self, request: PaymentRequest) -> None:
        url = request.three_d_secure_return_url
        problem = url and browser_url_problem(url, https_only=self._policy.https_return_urls)
        if problem:
            raise InvalidRequest(
                "the request is invalid: see errors",
                errors=[FieldError("three_d_secure.return_url", problem)],
            )

    async def _charge(
        self, payment: Payment, request: PaymentRequest, recorded_at: datetime
    ) -> Resolution:
        """Authenticate the card if 3-D Secure was asked for, then deposit, as far as it goes."""
        three_d_secure = payment.three_d_secure
        if three_d_secure is None:
            return await self._deposit(payment, request, recorded_at, None)
        return_url = self._policy.authentication_return_url(payment.id)
        answer = await self._bank.authenticate(payment.id, request, return_url)
        if isinstance(answer, BankFault):
            # An authentication moves no money: whatever became of it, nothing was charged.
            reason = (
                DeclineReason.BANK_REJECTED
                if answer is BankFault.REJECTED
                else DeclineReason.BANK_UNAVAILABLE
            )
            return Resolution(PaymentStatus.FAILED, decline_reason=reason)
        outcome = resolve_authentication(three_d_secure, answer)
        if outcome is not None:
            return outcome  # a challenge for the shopper, or a failed authentication
        return await self._deposit(payment, request, recorded_at, three_d_secure.learned(answer))

    async def _deposit(
        self,
        payment: Payment,
        request: PaymentRequest,
        recorded_at: datetime,
        three_d_secure: ThreeDSecure | None,
    ) -> Resolution:
        if self._clock() - recorded_at > self._policy.max_send_delay:
            # Recording took so long that the bank call could outlast the in-flight window,
            # when retries and the reconciler treat the payment as abandoned. Send nothing.
            log.warning("payment_not_sent_too_late", payment_id=payment.id)
            resolution = Resolution(
                PaymentStatus.FAILED, decline_reason=DeclineReason.BANK_UNAVAILABLE
            )
        else:
            authenticated = (
                three_d_secure is not None
                and three_d_secure.result is AuthenticationResult.AUTHENTICATED
            )
            answer = await self._bank.deposit(
                payment.id,
                request,
                three_d_secure.authentication_id if three_d_secure and authenticated else None,
            )
            resolution = resolve_deposit(answer, capture=payment.capture)
        return (
            resolution
            if three_d_secure is None
            else replace(resolution, three_d_secure=three_d_secure)
        )

    async def finish_authentication(
        self, payment_id: str, *, deadline_passed: bool = False
    ) -> Payment | None:
        """After a 3-D Secure challenge: ask the bank for the result, server-side, and charge
        the card if it was authenticated (docs/design.md, 3-D Secure).

        The shopper's return and the reconciler (``deadline_passed``) both come here; a payment
        no longer waiting for its challenge is left as it is, so a replayed return changes
        nothing. None: no such payment.
        """
        payment = await _retrying_storage(lambda: self._read_any(payment_id))
        three_d_secure = payment.three_d_secure if payment is not None else None
        if payment is None or three_d_secure is None:
            return None
        if payment.status is not PaymentStatus.REQUIRES_ACTION:
            return payment
        answer = await self._bank.authentication(payment.id)
        if isinstance(answer, BankFault):
            return payment  # ask again: at the latest the reconciler does, at the deadline
        by = "reconciler" if deadline_passed else "request"
        if answer is None or answer.status is AuthenticationStatus.CHALLENGE_REQUIRED:
            if not deadline_passed:
                return payment  # back without an answer: the challenge still stands
            return await self._apply(payment, expired(three_d_secure), by=by)
        outcome = resolve_authentication(three_d_secure, answer)
        if outcome is not None:
            return await self._apply(payment, outcome, by=by)
        return await self._deposit_authenticated(payment, three_d_secure.learned(answer), by)

    async def _deposit_authenticated(
        self, payment: Payment, three_d_secure: ThreeDSecure, by: str
    ) -> Payment:
        """Claim the authenticated payment (``requires_action`` → ``init``: one path only
        deposits), then deposit the stored card, without the CVV it never kept."""
        now = self._clock()
        claim = StatusTransition(
            payment.id,
            payment.merchant_id,
            Resolution(PaymentStatus.INIT, three_d_secure=three_d_secure),
            now,
            now + self._policy.in_flight,
            by=by,
            request_id=current_request_id(),
            payment=payment,
        )
        if not await _retrying_storage(lambda: self._recorder.record_transition(claim)):
            # The other path (a second return, the reconciler) got there first.
            return await _retrying_storage(lambda: self._read_any(payment.id)) or payment
        payment.apply(claim.resolution, now)
        request = await self._stored_request(payment)
        if request is None:
            resolution = Resolution(PaymentStatus.FAILED, decline_reason=CARD_DATA_ERASED)
        else:
            resolution = await self._deposit(payment, request, now, three_d_secure)
        return await self._apply(payment, resolution, by=by)

    async def _stored_request(self, payment: Payment) -> PaymentRequest | None:
        async with self._uow(read_only=True, single_statement=True) as uow:
            card = await uow.payments.card_of(payment.id)
        if card is None:
            return None
        holder = card.holder_name_encrypted
        return PaymentRequest(
            pan=self._vault.decrypt(card.pan_encrypted),
            cvv=None,
            expiry_month=payment.card.expiry_month,
            expiry_year=payment.card.expiry_year,
            holder_name=self._vault.decrypt(holder) if holder is not None else None,
            amount=payment.amount,
            currency=payment.currency,
            reference=payment.reference,
            capture=payment.capture,
        )

    async def expire_challenges(self, batch_size: int, lease_seconds: float) -> int:
        """Settle payments whose challenge is past its deadline: charged if the shopper did
        authenticate (and never came back), else failed ``authentication_expired``."""
        async with self._uow() as uow:
            due = await uow.payments.claim_unanswered_challenges(
                self._clock(), batch_size, lease_seconds
            )
            await uow.commit()
        settled = 0
        for payment_id in due:
            payment = await self.finish_authentication(payment_id, deadline_passed=True)
            settled += payment is not None and payment.status is not PaymentStatus.REQUIRES_ACTION
        return settled

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
            three_d_secure=(
                ThreeDSecure(return_url=request.three_d_secure_return_url)
                if request.three_d_secure_return_url is not None
                else None
            ),
            checkout_session_id=request.checkout_session_id,
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

    async def _apply(
        self, payment: Payment, resolution: Resolution, *, by: str = "request"
    ) -> Payment:
        """Record what the bank said. The card may be charged by now: never answer 500 here."""
        done = self._clock()
        if resolution.status in OPEN_STATUSES:
            next_attempt_at: datetime | None = done + self._policy.first_reconcile_delay
        elif resolution.status is PaymentStatus.REQUIRES_ACTION:
            # The challenge's deadline: then the reconciler settles it (expire_challenges).
            next_attempt_at = payment.created_at + self._policy.challenge_ttl
        elif resolution.status is PaymentStatus.AUTHORIZED:
            # An authorization's next look is its expiry: canceled if not captured by then.
            next_attempt_at = payment.created_at + self._policy.authorization_ttl
        else:
            next_attempt_at = None
        transition = StatusTransition(
            payment.id,
            payment.merchant_id,
            resolution,
            done,
            next_attempt_at,
            by=by,
            request_id=current_request_id(),
            payment=payment,
        )
        try:
            if await _retrying_storage(lambda: self._recorder.record_transition(transition)):
                payment.apply(resolution, done)
                return payment
            # Another path (the reconciler) got there first: show what it recorded.
            return await _retrying_storage(lambda: self._read_any(payment.id)) or payment
        except Exception:
            # The card may be charged: whatever went wrong, never answer 500 now. The row
            # stays `init`, and the reconciler learns the outcome from the bank.
            log.exception("payment_outcome_not_recorded", payment_id=payment.id)
            return payment

    async def _read(self, merchant: Merchant, payment_id: str) -> Payment | None:
        async with self._uow(read_only=True, single_statement=True) as uow:
            return await uow.payments.get(payment_id, merchant.id)

    async def _read_any(self, payment_id: str) -> Payment | None:
        """A payment whoever's it is: for paths with no merchant (a shopper, the reconciler)."""
        async with self._uow(read_only=True, single_statement=True) as uow:
            found = await uow.payments.get_many([payment_id])
        return found[0] if found else None

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
