"""The reconciler: asks the bank what became of payments whose outcome is not yet known."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

import structlog

from payment_gateway.domain.bank import BankFault, resolve_deposit, resolve_operation
from payment_gateway.domain.merchant import Merchant
from payment_gateway.domain.operations import (
    CancellationReason,
    Operation,
    OperationResolution,
    OperationStatus,
)
from payment_gateway.domain.payment import (
    OPEN_STATUSES,
    DeclineReason,
    PaymentStatus,
    Resolution,
    RetrySchedule,
)
from payment_gateway.metrics import RECONCILER_LAG
from payment_gateway.service.clock import Clock, utc_now
from payment_gateway.service.errors import GatewayError, StorageContention
from payment_gateway.service.operations import PaymentOperations
from payment_gateway.service.payments import PaymentService
from payment_gateway.service.ports import (
    BankAdapter,
    DuePayment,
    PaymentRecorder,
    StatusTransition,
    UnitOfWorkFactory,
)
from payment_gateway.service.retention import CardDataEraser
from payment_gateway.service.storage_retry import retrying_storage

log = structlog.get_logger(__name__)

# Retention counts in days: every 150 ticks (5 minutes at the default 2 s) is plenty.
ERASE_CARD_DATA_EVERY_TICKS = 150


@dataclass(frozen=True, slots=True)
class ReconcilePolicy:
    interval_seconds: float
    batch_size: int
    not_found_grace: timedelta  # a bank 404 means "never happened" only for payments this old
    lease_seconds: float  # how long a claim keeps other replicas away
    max_backoff_seconds: float
    idempotency_ttl: timedelta
    authorization_ttl: timedelta  # uncaptured authorizations are canceled after this

    @property
    def schedule(self) -> RetrySchedule:
        return RetrySchedule(self.lease_seconds, self.interval_seconds, self.max_backoff_seconds)


@dataclass(slots=True)
class ReconcileReport:
    claimed: int = 0
    resolved: int = 0


class CheckoutSessionExpiry(Protocol):
    async def expire_due(self) -> int:
        """Expire the checkout sessions past their expires_at (service/checkout.py)."""
        ...


class Reconciler:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        recorder: PaymentRecorder,
        bank: BankAdapter,
        operations: PaymentOperations,
        payments: PaymentService,
        policy: ReconcilePolicy,
        clock: Clock = utc_now,
        concurrency: int = 16,
    ) -> None:
        self._uow = uow
        self._recorder = recorder  # the requests' own write path (and group commit)
        self._bank = bank
        self._operations = operations
        self._payments = payments
        self._policy = policy
        self._clock = clock
        self._concurrency = concurrency

    async def reconcile_due_payments(self) -> ReconcileReport:
        """Claim due payments a chunk at a time and ask the bank about each chunk at once.

        Claiming no more than can be asked about together keeps every claim's lease (one
        bank call long) valid until its inquiry is done, so no other replica takes it.
        """
        report = ReconcileReport()
        while report.claimed < self._policy.batch_size:
            now = self._clock()
            async with self._uow() as uow:
                due = await uow.payments.claim_due(
                    now,
                    min(self._concurrency, self._policy.batch_size - report.claimed),
                    self._policy.schedule,
                )
                if not report.claimed:
                    oldest = await uow.payments.oldest_open_created_at()
                    RECONCILER_LAG.set((now - oldest).total_seconds() if oldest else 0.0)
                await uow.commit()
            if not due:
                break
            report.claimed += len(due)
            results = await asyncio.gather(*(self._reconcile_one(payment) for payment in due))
            report.resolved += sum(results)
        return report

    async def _reconcile_one(self, payment: DuePayment) -> bool:
        answer = await self._bank.inquire(payment.id)
        now = self._clock()
        if answer is None:
            # Sent when it was last updated: at creation, or after its 3-D Secure challenge.
            if payment.updated_at > now - self._policy.not_found_grace:
                return False  # the deposit may still be on its way to the bank
            resolution = Resolution(
                PaymentStatus.FAILED, decline_reason=DeclineReason.BANK_UNAVAILABLE
            )
        elif isinstance(answer, BankFault):
            return False  # try again after the backoff the claim already set
        else:
            resolution = resolve_deposit(answer, capture=payment.capture)
        next_attempt_at = None
        if resolution.status in OPEN_STATUSES:
            if payment.status != PaymentStatus.INIT:
                return False  # still processing: look again after the claim's backoff
            # A dead request's payment the bank holds as pending: out of `init`, still watched.
            next_attempt_at = now + timedelta(seconds=self._policy.interval_seconds)
        elif resolution.status is PaymentStatus.AUTHORIZED:
            # An authorization's next look is its expiry (expire_authorizations).
            next_attempt_at = payment.created_at + self._policy.authorization_ttl
        transition = StatusTransition(
            payment.id, payment.merchant_id, resolution, now, next_attempt_at, by="reconciler"
        )
        return await retrying_storage(lambda: self._recorder.record_transition(transition))

    async def reconcile_due_operations(self) -> ReconcileReport:
        """Ask the bank about pending captures, voids and refunds, as about payments."""
        report = ReconcileReport()
        now = self._clock()
        async with self._uow() as uow:
            due = await uow.operations.claim_due(
                now, min(self._concurrency, self._policy.batch_size), self._policy.schedule
            )
            await uow.commit()
        report.claimed = len(due)
        results = await asyncio.gather(*(self._reconcile_operation(op) for op in due))
        report.resolved = sum(results)
        return report

    async def _reconcile_operation(self, operation: Operation) -> bool:
        answer = await self._bank.inquire_operation(operation.kind, operation.id)
        if answer is None:
            if operation.created_at > self._clock() - self._policy.not_found_grace:
                return False  # the request may still be on its way to the bank
            resolution = OperationResolution(OperationStatus.FAILED, DeclineReason.BANK_UNAVAILABLE)
        else:
            resolution = resolve_operation(answer)
        if resolution.status is OperationStatus.PENDING:
            return False  # look again after the backoff the claim already set
        return await self._operations.settle_from_bank(operation, resolution)

    async def expire_authorizations(self) -> int:
        """Cancel authorizations not captured within AUTHORIZATION_TTL_SECONDS.

        As an issuer would release the hold: through the same cancel as a merchant's, with
        `cancellation_reason: expired`, claimed first so one replica does each.
        """
        async with self._uow() as uow:
            due = await uow.payments.claim_expired_authorizations(
                self._clock(), self._policy.batch_size, self._policy.lease_seconds
            )
            await uow.commit()
        expired = 0
        for authorization in due:
            merchant = Merchant(authorization.merchant_id, "")
            try:
                await self._operations.cancel(
                    merchant, authorization.payment_id, None, CancellationReason.EXPIRED
                )
                expired += 1
            except GatewayError as error:  # captured or canceled meanwhile, most likely
                log.info(
                    "authorization_not_expired",
                    payment_id=authorization.payment_id,
                    reason=error.detail,
                )
        return expired

    async def expire_challenges(self) -> int:
        """Settle payments whose 3-D Secure challenge outlived AUTHENTICATION_TTL_SECONDS."""
        return await self._payments.expire_challenges(
            self._policy.batch_size, self._policy.lease_seconds
        )

    async def release_expired_idempotency_keys(self) -> int:
        cutoff = self._clock() - self._policy.idempotency_ttl
        async with self._uow() as uow:
            count = await uow.payments.release_expired_idempotency_keys(cutoff)
            count += await uow.operations.release_expired_idempotency_keys(cutoff)
            await uow.commit()
        return count

    async def run_forever(
        self,
        card_data_eraser: CardDataEraser | None = None,
        checkout_sessions: CheckoutSessionExpiry | None = None,
    ) -> None:
        """The background loop started by the app's lifespan; cancelled on shutdown."""
        ticks = 0
        while True:
            try:
                await self.reconcile_due_payments()
                await self.reconcile_due_operations()
                await self.expire_authorizations()
                await self.expire_challenges()
                if checkout_sessions is not None:
                    await checkout_sessions.expire_due()
                if ticks % 100 == 0:
                    await self.release_expired_idempotency_keys()
                if card_data_eraser is not None and ticks % ERASE_CARD_DATA_EVERY_TICKS == 0:
                    await card_data_eraser.erase_expired()
            except asyncio.CancelledError:
                raise
            except StorageContention:
                # Another replica claimed the same rows first and its commit won: on a Galera
                # cluster SKIP LOCKED only skips this node's locks, so replicas on other nodes
                # see the same due rows and certification picks one claim. Nothing was
                # written; the next pass sees the winner's leases and takes other rows.
                log.info("reconciliation_pass_conflicted")
            except Exception:
                # A database blip must not kill the loop: log it and try on the next tick.
                log.exception("reconciliation_pass_failed")
            ticks += 1
            await asyncio.sleep(self._policy.interval_seconds)
