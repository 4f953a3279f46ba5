"""The one write path of a payment's status.

Every status change — a new payment, the outcome of its bank call, what the reconciler learns —
is written here, whether alone or in a group-committed batch (service/group_commit.py). Each
write makes the `PaymentStatusChanged` events of the rows it actually changed, inside its
transaction, and hands them to `_commit`: the one place where they are stored with the change
(the event outbox writes them there) and announced once the commit is through.
"""

from __future__ import annotations

from collections.abc import Sequence

from payment_gateway.domain.events import PaymentStatusChanged, RefundStatusChanged, StateChange
from payment_gateway.domain.operations import CancellationReason, OperationKind, OperationStatus
from payment_gateway.domain.payment import PaymentStatus
from payment_gateway.service.events import announce
from payment_gateway.service.ports import (
    NewPayment,
    OperationSettlement,
    StatusTransition,
    UnitOfWork,
    UnitOfWorkFactory,
)


def _created(new: NewPayment) -> PaymentStatusChanged:
    payment = new.payment
    return PaymentStatusChanged(
        payment.id,
        payment.merchant_id,
        payment.status,
        payment.created_at,
        amount=payment.amount,
        currency=payment.currency,
        request_id=new.request_id,
    )


def _transitioned(transition: StatusTransition) -> PaymentStatusChanged:
    resolution = transition.resolution
    return PaymentStatusChanged(
        transition.payment_id,
        transition.merchant_id,
        resolution.status,
        transition.at,
        code=resolution.code,
        decline_reason=resolution.decline_reason,
        by=transition.by,
        request_id=transition.request_id,
    )


class TransactionalRecorder:
    """Writes payments and their transitions, one transaction per call."""

    def __init__(self, uow: UnitOfWorkFactory) -> None:
        self._uow = uow

    async def record(self, new: NewPayment) -> None:
        await self.record_many([new])

    async def record_many(self, batch: Sequence[NewPayment]) -> None:
        """All the payments, or none (DuplicateIdempotencyKey names no payment of many)."""
        async with self._uow() as uow:
            await uow.payments.add_many(batch)
            await self._commit(uow, [_created(new) for new in batch])

    async def record_transition(self, transition: StatusTransition) -> bool:
        async with self._uow(single_statement=True) as uow:
            applied = await uow.payments.apply_transitions([transition]) == 1
            await self._commit(uow, [_transitioned(transition)] if applied else [])
        return applied

    async def record_all_transitions(self, batch: Sequence[StatusTransition]) -> bool:
        """Every transition of the batch, or none of them: False when any no longer applies."""
        async with self._uow() as uow:
            if await uow.payments.apply_transitions(batch) != len(batch):
                return False  # rolled back on leaving the unit of work
            await self._commit(uow, [_transitioned(transition) for transition in batch])
        return True

    async def settle_operation(self, settlement: OperationSettlement) -> bool:
        """Settle a capture, void or refund, and apply what it does to its payment, at once.

        The operation moves only from `pending` (so its effect applies once, whoever learns
        the answer first); a still-pending answer just schedules the next inquiry.
        """
        async with self._uow() as uow:
            if not await uow.operations.settle(settlement):
                return False
            changes = await _apply_to_payment(uow, settlement)
            await self._commit(uow, changes)
        return True

    async def _commit(self, uow: UnitOfWork, changes: list[StateChange]) -> None:
        await uow.commit()
        for change in changes:
            announce(change)


async def _apply_to_payment(uow: UnitOfWork, settlement: OperationSettlement) -> list[StateChange]:
    operation, status = settlement.operation, settlement.resolution.status
    if status is OperationStatus.PENDING:
        return []
    succeeded = status is OperationStatus.SUCCEEDED
    payments = uow.payments
    if operation.kind is OperationKind.REFUND:
        await payments.settle_refund(operation.payment_id, operation.amount, succeeded=succeeded)
        return [
            RefundStatusChanged(
                operation.id,
                operation.payment_id,
                operation.merchant_id,
                status,
                operation.amount,
                settlement.at,
                failure_reason=settlement.resolution.failure_reason,
                by=settlement.by,
                request_id=settlement.request_id,
            )
        ]
    if not succeeded:  # the authorization stands: another capture or void may be tried
        await payments.release_settlement(operation.payment_id, operation.id)
        return []
    if operation.kind is OperationKind.CAPTURE:
        moved = await payments.capture(
            operation.payment_id, operation.id, operation.amount, settlement.at
        )
        new_status = PaymentStatus.SUCCEEDED
    else:
        reason = operation.reason or CancellationReason.REQUESTED_BY_MERCHANT
        moved = await payments.cancel(operation.payment_id, operation.id, reason, settlement.at)
        new_status = PaymentStatus.CANCELED
    if not moved:
        return []
    return [
        PaymentStatusChanged(
            operation.payment_id,
            operation.merchant_id,
            new_status,
            settlement.at,
            by=settlement.by,
            request_id=settlement.request_id,
        )
    ]
