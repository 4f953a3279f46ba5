"""Use cases after the charge: capture or cancel an authorization, refund a captured payment.

Each follows the payment's own exactly-once rules (docs/design.md, Capture and refunds): an
optional Idempotency-Key (per merchant and kind of operation), the operation written
`pending` in the same transaction as its guard on the payment, committed before the bank is
called with the operation's id as the bank's de-duplication reference, and an uncertain
answer left `pending` for the reconciler, which asks the bank and never repeats it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta

import structlog

from payment_gateway import audit
from payment_gateway.domain.bank import resolve_operation
from payment_gateway.domain.merchant import Merchant
from payment_gateway.domain.operations import (
    CancellationReason,
    Operation,
    OperationKind,
    OperationResolution,
    OperationStatus,
    RefundReason,
)
from payment_gateway.domain.payment import Payment, PaymentStatus
from payment_gateway.logging_setup import current_request_id
from payment_gateway.service.clock import Clock, utc_now
from payment_gateway.service.errors import (
    FieldError,
    InvalidRequest,
    NotFound,
    RequestInProgress,
    WrongStatus,
)
from payment_gateway.service.idempotency import ensure_replayable, fingerprint
from payment_gateway.service.ids import new_id
from payment_gateway.service.ports import (
    BankAdapter,
    DuplicateIdempotencyKey,
    IdempotencyRecord,
    NewOperation,
    OperationRecorder,
    OperationSettlement,
    UnitOfWork,
    UnitOfWorkFactory,
)
from payment_gateway.service.storage_retry import retrying_storage

log = structlog.get_logger(__name__)

MAX_REFUNDS_LISTED = 100


@dataclass(frozen=True, slots=True)
class OperationPolicy:
    in_flight: timedelta  # an operation younger than this may still have its request running
    first_reconcile_delay: timedelta


@dataclass(frozen=True, slots=True)
class OperationResult:
    """An operation as it stands after its request, with its payment; or a replay of both."""

    operation: Operation
    payment: Payment
    replayed: bool


@dataclass(frozen=True, slots=True)
class OperationRequest:
    kind: OperationKind
    payment_id: str
    amount: int | None = None  # None: the whole authorization, or what is left to refund
    reason: str | None = None
    reference: str | None = None

    def fingerprint_material(self) -> bytes:
        fields = [self.kind.value, self.payment_id, self.amount, self.reason, self.reference]
        return json.dumps(fields, ensure_ascii=False).encode()


class PaymentOperations:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        recorder: OperationRecorder,
        bank: BankAdapter,
        request_hash_key: bytes,
        policy: OperationPolicy,
        clock: Clock = utc_now,
    ) -> None:
        self._uow = uow
        self._recorder = recorder
        self._bank = bank
        self._hash_key = request_hash_key
        self._policy = policy
        self._clock = clock

    async def capture(
        self, merchant: Merchant, payment_id: str, amount: int | None, idempotency_key: str | None
    ) -> OperationResult:
        request = OperationRequest(OperationKind.CAPTURE, payment_id, amount)
        return await self._run(merchant, request, idempotency_key)

    async def cancel(
        self,
        merchant: Merchant,
        payment_id: str,
        idempotency_key: str | None,
        reason: CancellationReason = CancellationReason.REQUESTED_BY_MERCHANT,
    ) -> OperationResult:
        request = OperationRequest(OperationKind.VOID, payment_id, reason=reason)
        return await self._run(merchant, request, idempotency_key)

    async def refund(
        self,
        merchant: Merchant,
        payment_id: str,
        amount: int | None,
        reason: RefundReason | None,
        reference: str | None,
        idempotency_key: str | None,
    ) -> OperationResult:
        request = OperationRequest(
            OperationKind.REFUND, payment_id, amount, reason.value if reason else None, reference
        )
        return await self._run(merchant, request, idempotency_key)

    async def get_refund(self, merchant: Merchant, refund_id: str) -> Operation:
        async with self._uow(read_only=True, single_statement=True) as uow:
            operation = await uow.operations.get(refund_id, merchant.id)
        found = operation is not None and operation.kind is OperationKind.REFUND
        audit.record("refund_read", merchant_id=merchant.id, refund_id=refund_id, found=found)
        if operation is None or not found:
            raise NotFound(f"no refund {refund_id}")
        return operation

    async def list_refunds(self, merchant: Merchant, payment_id: str) -> list[Operation]:
        audit.record("refunds_listed", merchant_id=merchant.id, payment_id=payment_id)
        async with self._uow(read_only=True) as uow:
            if await uow.payments.get(payment_id, merchant.id) is None:
                raise NotFound(f"no payment {payment_id}")
            return await uow.operations.list_for_payment(
                payment_id, merchant.id, OperationKind.REFUND, MAX_REFUNDS_LISTED
            )

    # -- the steps every operation takes

    async def _run(
        self, merchant: Merchant, request: OperationRequest, idempotency_key: str | None
    ) -> OperationResult:
        idempotency = None
        if idempotency_key is not None:
            digest = fingerprint(self._hash_key, request.fingerprint_material())
            idempotency = IdempotencyRecord(idempotency_key, digest)
        if idempotency is not None:
            # A retry must be answered as a retry even when the payment has moved on since.
            replay = await self._replay(merchant, request.kind, idempotency)
            if replay is not None:
                return replay
        try:
            # Nothing is sent before _begin commits, so a conflict (two Galera nodes reserving
            # on one payment at once) is simply run again, with a fresh operation id.
            operation = await retrying_storage(lambda: self._begin(merchant, request, idempotency))
        except DuplicateIdempotencyKey:  # a concurrent request claimed the key first
            assert idempotency is not None
            replay = await self._replay(merchant, request.kind, idempotency)
            if replay is None:
                raise RequestInProgress("this Idempotency-Key is being released; retry") from None
            return replay
        answer = await self._bank.operate(
            operation.kind, operation.id, operation.payment_id, operation.amount
        )
        await self._settle(operation, resolve_operation(answer), by="request")
        return await self._current(merchant, operation.id, replayed=False)

    async def _begin(
        self, merchant: Merchant, request: OperationRequest, idempotency: IdempotencyRecord | None
    ) -> Operation:
        """Commit the operation (`pending`) and its claim on the payment, or refuse it."""
        now = self._clock()
        async with self._uow() as uow:
            payment = await uow.payments.get(request.payment_id, merchant.id)
            if payment is None:
                raise NotFound(f"no payment {request.payment_id}")
            operation = Operation(
                id=new_id(),
                payment_id=payment.id,
                merchant_id=merchant.id,
                kind=request.kind,
                amount=_amount(request, payment),
                currency=payment.currency,
                status=OperationStatus.PENDING,
                created_at=now,
                updated_at=now,
                reason=request.reason,
                reference=request.reference,
            )
            # The guard first: its row lock, taken before the insert's foreign-key check reads
            # the payment, keeps racing operations from deadlocking on that row.
            await _claim(uow, payment, operation)
            await uow.operations.add(
                NewOperation(operation, idempotency, now + self._policy.in_flight)
            )
            await uow.commit()
        return operation

    async def _settle(
        self, operation: Operation, resolution: OperationResolution, *, by: str
    ) -> bool:
        now = self._clock()
        next_attempt_at = (
            now + self._policy.first_reconcile_delay
            if resolution.status is OperationStatus.PENDING
            else None
        )
        settlement = OperationSettlement(
            operation, resolution, now, next_attempt_at, by=by, request_id=current_request_id()
        )
        try:
            return await self._recorder.settle_operation(settlement)
        except Exception:
            # The bank may have acted: never answer 500 now. The operation stays pending and
            # the reconciler asks the bank what became of it.
            log.exception("operation_outcome_not_recorded", operation_id=operation.id)
            return False

    async def settle_from_bank(self, operation: Operation, resolution: OperationResolution) -> bool:
        """What the reconciler learned about a pending operation."""
        return await self._settle(operation, resolution, by="reconciler")

    async def _current(
        self, merchant: Merchant, operation_id: str, *, replayed: bool
    ) -> OperationResult:
        async with self._uow(read_only=True) as uow:
            operation = await uow.operations.get(operation_id, merchant.id)
            assert operation is not None, "an operation is never deleted"
            payment = await uow.payments.get(operation.payment_id, merchant.id)
            assert payment is not None
        return OperationResult(operation, payment, replayed)

    async def _replay(
        self, merchant: Merchant, kind: OperationKind, idempotency: IdempotencyRecord
    ) -> OperationResult | None:
        """The operation the key already stands for, as it stands now; None if none."""
        async with self._uow(read_only=True, single_statement=True) as uow:
            found = await uow.operations.find_by_idempotency_key(merchant.id, kind, idempotency.key)
        if found is None:
            return None
        operation = found.operation
        ensure_replayable(
            found.request_hash,
            idempotency.request_hash,
            in_flight=operation.status is OperationStatus.PENDING
            and operation.created_at > self._clock() - self._policy.in_flight,
        )
        return await self._current(merchant, operation.id, replayed=True)


def _amount(request: OperationRequest, payment: Payment) -> int:
    if request.kind is OperationKind.VOID:
        return payment.amount
    if request.kind is OperationKind.CAPTURE:
        limit, what = payment.amount, "the authorized amount"
    else:
        limit, what = payment.amount_captured, "what was captured"
    # By default a refund takes what is left (of what is left as of this read).
    default = limit if request.kind is OperationKind.CAPTURE else payment.amount_refundable
    amount = default if request.amount is None else request.amount
    if amount > limit:
        raise InvalidRequest(
            "the request is invalid: see errors",
            errors=[FieldError("amount", f"must be at most {limit} ({what})")],
        )
    return amount


async def _claim(uow: UnitOfWork, payment: Payment, operation: Operation) -> None:
    """The guard on the payment, taken in the operation's own transaction."""
    if operation.kind is OperationKind.REFUND:
        if payment.status is not PaymentStatus.SUCCEEDED:
            raise WrongStatus(
                f"only a succeeded payment can be refunded; this one is {payment.status}"
            )
        if not await uow.payments.reserve_refund(payment.id, operation.amount):
            left = await _left_to_refund(uow, payment)
            raise InvalidRequest(
                "the request is invalid: see errors",
                errors=[FieldError("amount", f"exceeds what is left to refund ({left})")],
            )
        return
    if payment.status is not PaymentStatus.AUTHORIZED:
        verb = "captured" if operation.kind is OperationKind.CAPTURE else "canceled"
        raise WrongStatus(f"only an authorized payment can be {verb}; this one is {payment.status}")
    if not await uow.payments.claim_settlement(payment.id, operation.id):
        raise WrongStatus("a capture or cancellation of this payment is already under way")


async def _left_to_refund(uow: UnitOfWork, payment: Payment) -> int:
    """What a refund may still take, as of now (pending refunds count against it)."""
    current = await uow.payments.get(payment.id, payment.merchant_id)
    return 0 if current is None else current.amount_refundable
