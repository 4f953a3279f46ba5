"""The one write path of a payment's status.

Every status change — a new payment, the outcome of its bank call, what the reconciler learns,
a capture, void or refund settling — is written here, whether alone or in a group-committed
batch (service/group_commit.py). Each write makes the domain events of the rows it actually
changed, inside its transaction, and hands them to `_commit`: the one place where their
outbox events are written with the change (service/outbox.py) and where they are announced
once the commit is through.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from payment_gateway.domain.checkout import (
    COMPLETING_PAYMENT_STATUSES,
    MAX_DECLINES,
    PENDING_PAYMENT_STATUSES,
    CheckoutStatus,
)
from payment_gateway.domain.events import (
    CheckoutSessionChanged,
    PaymentStatusChanged,
    RefundStatusChanged,
    StateChange,
)
from payment_gateway.domain.operations import CancellationReason, OperationKind, OperationStatus
from payment_gateway.domain.payment import Payment, PaymentStatus
from payment_gateway.service.documents import (
    checkout_session_document,
    payment_document,
    refund_document,
)
from payment_gateway.service.events import announce
from payment_gateway.service.outbox import events_for, needs_event
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


def _moved(transition: StatusTransition) -> Payment | None:
    """The payment after the transition, from the copy the request holds (None: read it)."""
    if transition.payment is None:
        return None
    after = dataclasses.replace(transition.payment)
    return after if after.apply(transition.resolution, transition.at) else None


class TransactionalRecorder:
    """Writes payments and their transitions, one transaction per call.

    ``on_events`` is called after a commit that wrote events (it wakes this process's
    webhook delivery, which otherwise finds them on its next poll).
    """

    def __init__(self, uow: UnitOfWorkFactory, on_events: Callable[[], None] | None = None) -> None:
        self._uow = uow
        self._on_events = on_events

    async def record(self, new: NewPayment) -> None:
        await self.record_many([new])

    async def record_many(self, batch: Sequence[NewPayment]) -> None:
        """All the payments, or none (DuplicateIdempotencyKey names no payment of many)."""
        await self.record_together(batch, ())

    async def record_transition(self, transition: StatusTransition) -> bool:
        return await self.record_all_transitions([transition])

    async def record_all_transitions(self, batch: Sequence[StatusTransition]) -> bool:
        """Every transition of the batch, or none of them: False when any no longer applies."""
        return await self.record_together((), batch)

    async def record_together(
        self, news: Sequence[NewPayment], transitions: Sequence[StatusTransition]
    ) -> bool:
        """New payments and transitions in one transaction, all or nothing: False, with
        nothing written, when any transition no longer applies."""
        changes: list[StateChange] = []
        documents: dict[str, dict[str, Any]] = {}
        async with self._uow() as uow:
            if news:
                await uow.payments.add_many(news)
                # A creation has no outbox event: the merchant's own request answers it.
                changes += [_created(new) for new in news]
            if transitions:
                if await uow.payments.apply_transitions(transitions) != len(transitions):
                    return False  # rolled back on leaving the unit of work
                moved = await _payments_after(uow, transitions)
                documents = {payment.id: payment_document(payment) for payment in moved}
                changes += [_transitioned(t) for t in transitions]
                if any(payment.checkout_session_id for payment in moved):
                    # Only payments of the hosted page pay for this; API payments skip it.
                    changes += await _follow_checkout_sessions(uow, transitions, moved, documents)
            await self._commit(uow, changes, documents)
        return True

    async def expire_checkout_session(
        self, session_id: str, merchant_id: str, at: datetime, request_id: str | None = None
    ) -> bool:
        """The merchant expires an open session (none of its payments may still succeed)."""
        async with self._uow() as uow:
            if not await uow.checkout_sessions.expire(session_id, at):
                return False
            change = CheckoutSessionChanged(
                session_id, merchant_id, CheckoutStatus.EXPIRED, at, request_id=request_id
            )
            await self._commit(uow, [change], await _session_documents(uow, [session_id]))
        return True

    async def expire_due_checkout_sessions(self, now: datetime, limit: int) -> int:
        """Expire open sessions past their ``expires_at``, with their events, at once."""
        async with self._uow() as uow:
            expired = await uow.checkout_sessions.expire_due(now, limit)
            changes: list[StateChange] = [
                CheckoutSessionChanged(
                    session_id, merchant_id, CheckoutStatus.EXPIRED, now, by="expiry"
                )
                for session_id, merchant_id in expired
            ]
            documents = await _session_documents(uow, [session_id for session_id, _ in expired])
            await self._commit(uow, changes, documents)
        return len(expired)

    async def settle_operation(self, settlement: OperationSettlement) -> bool:
        """Settle a capture, void or refund, and apply what it does to its payment, at once.

        The operation moves only from `pending` (so its effect applies once, whoever learns
        the answer first); a still-pending answer just schedules the next inquiry.
        """
        async with self._uow() as uow:
            if not await uow.operations.settle(settlement):
                return False
            changes = await _apply_to_payment(uow, settlement)
            documents = await _settled_documents(uow, settlement, changes)
            await self._commit(uow, changes, documents)
        return True

    async def _commit(
        self,
        uow: UnitOfWork,
        changes: list[StateChange],
        documents: Mapping[str, dict[str, Any]],
    ) -> None:
        events = events_for(changes, documents)
        if events:
            await uow.events.add_many(events)
        await uow.commit()
        for change in changes:
            announce(change)
        if events and self._on_events is not None:
            self._on_events()


async def _payments_after(uow: UnitOfWork, batch: Sequence[StatusTransition]) -> list[Payment]:
    """Each transitioned payment as it now stands, for its event."""
    moved: list[Payment] = []
    unknown: list[str] = []
    for transition in batch:
        after = _moved(transition)
        if after is None:
            unknown.append(transition.payment_id)
        else:
            moved.append(after)
    if unknown:  # read back in this transaction: what it is about to commit
        moved += await uow.payments.get_many(unknown)
    return moved


async def _follow_checkout_sessions(
    uow: UnitOfWork,
    batch: Sequence[StatusTransition],
    moved: Sequence[Payment],
    documents: dict[str, dict[str, Any]],
) -> list[CheckoutSessionChanged]:
    """What the payments of checkout sessions do to them, in the payments' transaction.

    A payment that succeeds (or is authorized) completes its session; one that fails counts
    as a decline, and the fifth decline expires the session (card testing); one still
    under way is shown on it. Whoever learned the outcome, request or reconciler.
    """
    by_payment = {transition.payment_id: transition for transition in batch}
    sessions = uow.checkout_sessions
    changes: list[CheckoutSessionChanged] = []
    for payment in moved:
        session_id = payment.checkout_session_id
        if session_id is None:
            continue
        transition = by_payment[payment.id]
        at, status = transition.at, payment.status
        new_status: CheckoutStatus | None = None
        if status in COMPLETING_PAYMENT_STATUSES:
            paid = status is PaymentStatus.SUCCEEDED
            if await sessions.complete(session_id, payment.id, paid, at):
                new_status = CheckoutStatus.COMPLETE
        elif status is PaymentStatus.FAILED:
            declines = await sessions.count_decline(session_id, payment.id, at)
            expires = declines is not None and declines >= MAX_DECLINES
            if expires and await sessions.expire(session_id, at):
                new_status = CheckoutStatus.EXPIRED
        elif status in PENDING_PAYMENT_STATUSES:
            await sessions.attach_payment(session_id, payment.id, at)
        if new_status is not None:
            changes.append(
                CheckoutSessionChanged(
                    session_id,
                    payment.merchant_id,
                    new_status,
                    at,
                    payment_id=payment.id,
                    by=transition.by,
                    request_id=transition.request_id,
                )
            )
    documents.update(await _session_documents(uow, [change.session_id for change in changes]))
    return changes


async def _session_documents(
    uow: UnitOfWork, session_ids: Sequence[str]
) -> dict[str, dict[str, Any]]:
    if not session_ids:
        return {}
    sessions = await uow.checkout_sessions.get_many(session_ids)
    return {session.id: checkout_session_document(session) for session in sessions}


async def _settled_documents(
    uow: UnitOfWork, settlement: OperationSettlement, changes: Sequence[StateChange]
) -> dict[str, dict[str, Any]]:
    """What the events of a settled operation show: the refund, or the payment it moved."""
    if not any(needs_event(change) for change in changes):
        return {}
    operation = settlement.operation
    if operation.kind is OperationKind.REFUND:
        refund = await uow.operations.get(operation.id, operation.merchant_id)
        assert refund is not None, "a refund settled in this transaction"
        return {refund.id: refund_document(refund)}
    payments = await uow.payments.get_many([operation.payment_id])
    return {payment.id: payment_document(payment) for payment in payments}


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
