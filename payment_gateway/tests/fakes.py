"""In-memory fakes of the ports in ``payment_gateway.service.ports``, for tests.

``import fakes``: pytest puts this folder on the path (``pythonpath`` in pyproject.toml).

Commit semantics: a unit of work copies the committed state on enter and works on that
copy; ``commit`` publishes the rows it changed, anything else is discarded on exit. The
idempotency claim is checked against both the working copy and the committed state, like a
unique key would be.
"""

from __future__ import annotations

import asyncio
import copy
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Self

from payment_gateway.domain.bank import BankAnswer, BankFault
from payment_gateway.domain.checkout import (
    PENDING_PAYMENT_STATUSES,
    CheckoutPaymentStatus,
    CheckoutSession,
    CheckoutStatus,
)
from payment_gateway.domain.events import Event
from payment_gateway.domain.merchant import ApiKeyInfo, Merchant
from payment_gateway.domain.operations import Operation, OperationKind, OperationStatus
from payment_gateway.domain.payment import (
    OPEN_STATUSES,
    Payment,
    PaymentRequest,
    PaymentStatus,
    RetrySchedule,
    statuses_that_may_become,
)
from payment_gateway.domain.three_d_secure import Authentication, AuthenticationStatus
from payment_gateway.service.ports import (
    DueAuthorization,
    DuePayment,
    DuplicateIdempotencyKey,
    DuplicateMerchant,
    KeyedOperation,
    KeyedPayment,
    ListPosition,
    NewOperation,
    NewPayment,
    OperationSettlement,
    PaymentFilters,
    StatusTransition,
    StoredCard,
)


class FakeClock:
    """An injectable clock: ``clock()`` is the current time, ``advance`` moves it."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2030, 6, 15, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


@dataclass
class PaymentRow:
    payment: Payment
    card: StoredCard
    idempotency_key: str | None
    request_hash: str | None
    next_attempt_at: datetime | None
    attempts: int = 0
    settlement_operation_id: str | None = None


@dataclass
class OperationRow:
    operation: Operation
    idempotency_key: str | None
    request_hash: str | None
    next_attempt_at: datetime | None
    attempts: int = 0


@dataclass
class KeyRow:
    id: str
    merchant_id: str
    key_hash: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None = None


@dataclass
class FakeStore:
    """The committed state every unit of work starts from."""

    payments: dict[str, PaymentRow] = field(default_factory=dict)
    merchants: dict[str, Merchant] = field(default_factory=dict)
    merchant_created: dict[str, datetime] = field(default_factory=dict)
    keys: dict[str, KeyRow] = field(default_factory=dict)
    operations: dict[str, OperationRow] = field(default_factory=dict)
    events: dict[str, Event] = field(default_factory=dict)  # the outbox
    checkout_sessions: dict[str, CheckoutSession] = field(default_factory=dict)
    commits: int = 0

    def payment(self, payment_id: str) -> Payment:
        return self.payments[payment_id].payment

    def snapshot(self) -> FakeStore:
        return copy.deepcopy(self)


def _claimed(rows: dict[str, PaymentRow], merchant_id: str, key: str) -> PaymentRow | None:
    for row in rows.values():
        if row.payment.merchant_id == merchant_id and row.idempotency_key == key:
            return row
    return None


def _matches(payment: Payment, filters: PaymentFilters) -> bool:
    created = payment.created_at
    bounds_hold = (
        (filters.created_gte is None or created >= filters.created_gte)
        and (filters.created_gt is None or created > filters.created_gt)
        and (filters.created_lte is None or created <= filters.created_lte)
        and (filters.created_lt is None or created < filters.created_lt)
    )
    return (
        bounds_hold
        and (filters.status is None or payment.status is filters.status)
        and (filters.reference is None or payment.reference == filters.reference)
    )


class FakePaymentListing:
    """The listing, by sorting every row: what the SQL index range must give."""

    _work: FakeStore

    async def list_page(
        self,
        merchant_id: str,
        filters: PaymentFilters,
        limit: int,
        *,
        older_than: ListPosition | None = None,
        newer_than: ListPosition | None = None,
    ) -> list[Payment]:
        def position(payment: Payment) -> tuple[datetime, str]:
            return (payment.created_at, payment.id)

        rows = sorted(
            (
                row.payment
                for row in self._work.payments.values()
                if row.payment.merchant_id == merchant_id and _matches(row.payment, filters)
            ),
            key=position,
            reverse=newer_than is None,
        )
        if older_than is not None:
            rows = [p for p in rows if position(p) < (older_than.created_at, older_than.id)]
        if newer_than is not None:
            rows = [p for p in rows if position(p) > (newer_than.created_at, newer_than.id)]
        return [copy.deepcopy(payment) for payment in rows[:limit]]


class FakePaymentRepository(FakePaymentListing):
    def __init__(self, work: FakeStore, committed: FakeStore, dirty: set[str]) -> None:
        self._work = work
        self._committed = committed
        self._dirty = dirty
        self.calls: list[str] = []

    def _touch(self, payment_id: str) -> None:
        self._dirty.add(payment_id)

    async def add_many(self, entries: Sequence[NewPayment]) -> None:
        for entry in entries:
            self._add(entry)

    def _add(self, entry: NewPayment) -> None:
        payment, idempotency = entry.payment, entry.idempotency
        if payment.id in self._work.payments or payment.id in self._committed.payments:
            raise AssertionError(f"payment id {payment.id} inserted twice")
        if idempotency is not None and (
            _claimed(self._work.payments, payment.merchant_id, idempotency.key)
            or _claimed(self._committed.payments, payment.merchant_id, idempotency.key)
        ):
            raise DuplicateIdempotencyKey(idempotency.key)
        self._work.payments[payment.id] = PaymentRow(
            payment=copy.deepcopy(payment),
            card=entry.card,
            idempotency_key=idempotency.key if idempotency else None,
            request_hash=idempotency.request_hash if idempotency else None,
            next_attempt_at=entry.next_attempt_at,
        )
        self._touch(payment.id)

    async def get(self, payment_id: str, merchant_id: str) -> Payment | None:
        row = self._work.payments.get(payment_id)
        if row is None or row.payment.merchant_id != merchant_id:
            return None
        return copy.deepcopy(row.payment)

    async def get_many(self, payment_ids: Sequence[str]) -> list[Payment]:
        rows = [self._work.payments.get(payment_id) for payment_id in payment_ids]
        return [copy.deepcopy(row.payment) for row in rows if row is not None]

    async def find_by_idempotency_key(self, merchant_id: str, key: str) -> KeyedPayment | None:
        row = _claimed(self._work.payments, merchant_id, key)
        if row is None:
            return None
        return KeyedPayment(copy.deepcopy(row.payment), row.request_hash)

    async def release_idempotency_key(
        self, payment_id: str, key: str, created_before: datetime
    ) -> bool:
        row = self._work.payments.get(payment_id)
        if row is None or row.idempotency_key != key or row.payment.created_at >= created_before:
            return False
        row.idempotency_key = None
        row.request_hash = None
        self._touch(payment_id)
        return True

    async def apply_transitions(self, transitions: Sequence[StatusTransition]) -> int:
        return sum([self._apply(transition) for transition in transitions])

    def _apply(self, transition: StatusTransition) -> bool:
        resolution = transition.resolution
        self.calls.append(f"apply_transition:{transition.payment_id}:{resolution.status.value}")
        row = self._work.payments.get(transition.payment_id)
        if row is None or row.payment.status not in statuses_that_may_become(resolution.status):
            return False
        row.payment = replace(
            row.payment,
            status=resolution.status,
            code=resolution.code,
            decline_reason=resolution.decline_reason,
            updated_at=transition.at,
            amount_captured=(
                row.payment.amount
                if resolution.status is PaymentStatus.SUCCEEDED
                else row.payment.amount_captured
            ),
            tracking_id=(
                resolution.tracking_id
                if resolution.tracking_id is not None
                else row.payment.tracking_id
            ),
            three_d_secure=resolution.three_d_secure or row.payment.three_d_secure,
        )
        row.next_attempt_at = transition.next_attempt_at
        self._touch(transition.payment_id)
        return True

    async def claim_due(
        self,
        now: datetime,
        limit: int,
        schedule: RetrySchedule,
    ) -> list[DuePayment]:
        due = sorted(
            (
                row
                for row in self._work.payments.values()
                if row.payment.status in OPEN_STATUSES
                and row.next_attempt_at is not None
                and row.next_attempt_at <= now
            ),
            key=lambda row: row.next_attempt_at or now,
        )[:limit]
        claimed = []
        for row in due:
            row.next_attempt_at = schedule.next_attempt_at(now, row.attempts)
            row.attempts += 1
            self._touch(row.payment.id)
            claimed.append(
                DuePayment(
                    row.payment.id,
                    row.payment.merchant_id,
                    row.payment.status.value,
                    row.payment.created_at,
                    row.payment.updated_at,
                    row.payment.capture,
                )
            )
        return claimed

    async def release_expired_idempotency_keys(self, created_before: datetime) -> int:
        count = 0
        for row in self._work.payments.values():
            if row.idempotency_key is not None and row.payment.created_at < created_before:
                row.idempotency_key = None
                row.request_hash = None
                self._touch(row.payment.id)
                count += 1
        return count

    async def oldest_open_created_at(self) -> datetime | None:
        open_rows = [
            row.payment.created_at
            for row in self._work.payments.values()
            if row.payment.status in OPEN_STATUSES
        ]
        return min(open_rows, default=None)

    # -- after the charge

    def _authorized(self, payment_id: str, operation_id: str | None) -> PaymentRow | None:
        row = self._work.payments.get(payment_id)
        if row is None or row.payment.status is not PaymentStatus.AUTHORIZED:
            return None
        return row if row.settlement_operation_id == operation_id else None

    async def claim_settlement(self, payment_id: str, operation_id: str) -> bool:
        row = self._authorized(payment_id, None)
        if row is None:
            return False
        row.settlement_operation_id = operation_id
        self._touch(payment_id)
        return True

    async def release_settlement(self, payment_id: str, operation_id: str) -> None:
        row = self._work.payments.get(payment_id)
        if row is not None and row.settlement_operation_id == operation_id:
            row.settlement_operation_id = None
            self._touch(payment_id)

    async def capture(self, payment_id: str, operation_id: str, amount: int, at: datetime) -> bool:
        row = self._authorized(payment_id, operation_id)
        if row is None:
            return False
        row.payment = replace(
            row.payment, status=PaymentStatus.SUCCEEDED, amount_captured=amount, updated_at=at
        )
        row.settlement_operation_id = row.next_attempt_at = None
        self._touch(payment_id)
        return True

    async def cancel(self, payment_id: str, operation_id: str, reason: str, at: datetime) -> bool:
        row = self._authorized(payment_id, operation_id)
        if row is None:
            return False
        row.payment = replace(
            row.payment, status=PaymentStatus.CANCELED, cancellation_reason=reason, updated_at=at
        )
        row.settlement_operation_id = row.next_attempt_at = None
        self._touch(payment_id)
        return True

    async def reserve_refund(self, payment_id: str, amount: int) -> bool:
        row = self._work.payments.get(payment_id)
        if row is None or row.payment.status is not PaymentStatus.SUCCEEDED:
            return False
        if amount > row.payment.amount_refundable:
            return False
        row.payment = replace(
            row.payment, amount_refund_pending=row.payment.amount_refund_pending + amount
        )
        self._touch(payment_id)
        return True

    async def settle_refund(self, payment_id: str, amount: int, *, succeeded: bool) -> None:
        row = self._work.payments[payment_id]
        payment = row.payment
        row.payment = replace(
            payment,
            amount_refund_pending=payment.amount_refund_pending - amount,
            amount_refunded=payment.amount_refunded + (amount if succeeded else 0),
        )
        self._touch(payment_id)

    async def claim_expired_authorizations(
        self, now: datetime, limit: int, lease_seconds: float
    ) -> list[DueAuthorization]:
        due = self._claim_for_lease(
            PaymentStatus.AUTHORIZED, now, limit, lease_seconds, settling=False
        )
        return [DueAuthorization(row.payment.id, row.payment.merchant_id) for row in due]

    async def claim_unanswered_challenges(
        self, now: datetime, limit: int, lease_seconds: float
    ) -> list[str]:
        due = self._claim_for_lease(PaymentStatus.REQUIRES_ACTION, now, limit, lease_seconds)
        return [row.payment.id for row in due]

    def _claim_for_lease(
        self,
        status: PaymentStatus,
        now: datetime,
        limit: int,
        lease_seconds: float,
        *,
        settling: bool | None = None,
    ) -> list[PaymentRow]:
        """Rows in ``status`` whose next_attempt_at is due, pushed on by the lease."""
        due = [
            row
            for row in self._work.payments.values()
            if row.payment.status is status
            and row.next_attempt_at is not None
            and row.next_attempt_at <= now
            and (settling is None or (row.settlement_operation_id is not None) == settling)
        ][:limit]
        for row in due:
            row.next_attempt_at = now + timedelta(seconds=lease_seconds)
            self._touch(row.payment.id)
        return due

    async def card_of(self, payment_id: str) -> StoredCard | None:
        row = self._work.payments.get(payment_id)
        return row.card if row is not None and row.card.pan_encrypted else None


class FakeOperationRepository:
    def __init__(self, work: FakeStore, committed: FakeStore, dirty: set[str]) -> None:
        self._work = work
        self._committed = committed
        self._dirty = dirty

    def _touch(self, operation_id: str) -> None:
        self._dirty.add(f"operation:{operation_id}")

    def _claimed(
        self, store: FakeStore, merchant_id: str, kind: str, key: str
    ) -> OperationRow | None:
        for row in store.operations.values():
            op = row.operation
            if op.merchant_id == merchant_id and op.kind == kind and row.idempotency_key == key:
                return row
        return None

    async def add(self, new: NewOperation) -> None:
        operation, idempotency = new.operation, new.idempotency
        if idempotency is not None and any(
            self._claimed(store, operation.merchant_id, operation.kind, idempotency.key)
            for store in (self._work, self._committed)
        ):
            raise DuplicateIdempotencyKey(idempotency.key)
        self._work.operations[operation.id] = OperationRow(
            copy.deepcopy(operation),
            idempotency.key if idempotency else None,
            idempotency.request_hash if idempotency else None,
            new.next_attempt_at,
        )
        self._touch(operation.id)

    async def get(self, operation_id: str, merchant_id: str) -> Operation | None:
        row = self._work.operations.get(operation_id)
        if row is None or row.operation.merchant_id != merchant_id:
            return None
        return copy.deepcopy(row.operation)

    async def find_by_idempotency_key(
        self, merchant_id: str, kind: OperationKind, key: str
    ) -> KeyedOperation | None:
        row = self._claimed(self._work, merchant_id, kind, key)
        return (
            None if row is None else KeyedOperation(copy.deepcopy(row.operation), row.request_hash)
        )

    async def list_for_payment(
        self, payment_id: str, merchant_id: str, kind: OperationKind, limit: int
    ) -> list[Operation]:
        found = [
            copy.deepcopy(row.operation)
            for row in self._work.operations.values()
            if row.operation.payment_id == payment_id
            and row.operation.merchant_id == merchant_id
            and row.operation.kind is kind
        ]
        return sorted(found, key=lambda op: (op.created_at, op.id), reverse=True)[:limit]

    async def settle(self, settlement: OperationSettlement) -> bool:
        row = self._work.operations.get(settlement.operation.id)
        if row is None or row.operation.status is not OperationStatus.PENDING:
            return False
        resolution = settlement.resolution
        row.next_attempt_at = settlement.next_attempt_at
        if resolution.status is not OperationStatus.PENDING:
            row.operation = replace(
                row.operation,
                status=resolution.status,
                failure_reason=resolution.failure_reason,
                tracking_id=resolution.tracking_id or row.operation.tracking_id,
                updated_at=settlement.at,
            )
        self._touch(row.operation.id)
        return True

    async def claim_due(
        self, now: datetime, limit: int, schedule: RetrySchedule
    ) -> list[Operation]:
        due = [
            row
            for row in self._work.operations.values()
            if row.operation.status is OperationStatus.PENDING
            and row.next_attempt_at is not None
            and row.next_attempt_at <= now
        ][:limit]
        for row in due:
            row.next_attempt_at = schedule.next_attempt_at(now, row.attempts)
            row.attempts += 1
            self._touch(row.operation.id)
        return [copy.deepcopy(row.operation) for row in due]

    async def release_expired_idempotency_keys(self, created_before: datetime) -> int:
        count = 0
        for row in self._work.operations.values():
            if row.idempotency_key is not None and row.operation.created_at < created_before:
                row.idempotency_key = row.request_hash = None
                self._touch(row.operation.id)
                count += 1
        return count


class FakeMerchantRepository:
    def __init__(self, work: FakeStore, committed: FakeStore, dirty: set[str]) -> None:
        self._work = work
        self._committed = committed
        self._dirty = dirty

    async def by_key_hash(self, key_hash: str) -> Merchant | None:
        for row in self._work.keys.values():
            if row.key_hash == key_hash and row.revoked_at is None:
                return self._work.merchants[row.merchant_id]
        return None

    async def by_name(self, name: str) -> Merchant | None:
        for merchant in self._work.merchants.values():
            if merchant.name == name:
                return merchant
        return None

    async def add(self, merchant: Merchant, now: datetime) -> None:
        names = {m.name for m in self._work.merchants.values()} | {
            m.name for m in self._committed.merchants.values()
        }
        if merchant.name in names:
            raise DuplicateMerchant(merchant.name)
        self._work.merchants[merchant.id] = merchant
        self._work.merchant_created[merchant.id] = now
        self._dirty.add(f"merchant:{merchant.id}")

    async def add_key(self, merchant_id: str, key_hash: str, prefix: str, now: datetime) -> None:
        key_id = f"key-{len(self._work.keys) + len(self._committed.keys) + 1}"
        self._work.keys[key_id] = KeyRow(key_id, merchant_id, key_hash, prefix, now)
        self._dirty.add(f"key:{key_id}")

    async def list_keys(self) -> list[ApiKeyInfo]:
        rows = sorted(
            self._work.keys.values(),
            key=lambda r: (self._work.merchants[r.merchant_id].name, r.created_at),
        )
        return [
            ApiKeyInfo(
                r.id, self._work.merchants[r.merchant_id].name, r.prefix, r.created_at, r.revoked_at
            )
            for r in rows
        ]

    async def revoke_key(self, prefix: str, now: datetime) -> int:
        count = 0
        for row in self._work.keys.values():
            if row.prefix == prefix and row.revoked_at is None:
                row.revoked_at = now
                self._dirty.add(f"key:{row.id}")
                count += 1
        return count


class FakeCardRepository:
    """Cards live in their payment's row here; an erased card has an empty PAN ciphertext."""

    def __init__(self, work: FakeStore, dirty: set[str]) -> None:
        self._work = work
        self._dirty = dirty

    async def erase_card_data(self, created_before: datetime, limit: int, now: datetime) -> int:
        due = sorted(
            (
                row
                for row in self._work.payments.values()
                if row.card.pan_encrypted
                and row.payment.created_at < created_before
                and row.payment.status.is_terminal
            ),
            key=lambda row: row.payment.created_at,
        )[:limit]
        for row in due:
            row.card = replace(row.card, pan_encrypted=b"", holder_name_encrypted=None)
            self._dirty.add(row.payment.id)
        return len(due)


class FakeEventRepository:
    def __init__(self, work: FakeStore, dirty: set[str]) -> None:
        self._work = work
        self._dirty = dirty

    async def add_many(self, events: Sequence[Event]) -> None:
        for event in events:
            self._work.events[event.id] = event
            self._dirty.add(f"event:{event.id}")


class FakeCheckoutSessionRepository:
    def __init__(self, work: FakeStore, dirty: set[str]) -> None:
        self._work = work
        self._dirty = dirty

    def _pending(self, session_id: str) -> bool:
        return any(
            row.payment.checkout_session_id == session_id
            and row.payment.status in PENDING_PAYMENT_STATUSES
            for row in self._work.payments.values()
        )

    def _read(self, session: CheckoutSession) -> CheckoutSession:
        merchant = self._work.merchants.get(session.merchant_id)
        return replace(
            session,
            merchant_name=merchant.name if merchant else "",
            payment_pending=self._pending(session.id),
        )

    def _update(self, session_id: str, **values: Any) -> None:
        self._work.checkout_sessions[session_id] = replace(
            self._work.checkout_sessions[session_id], **values
        )
        self._dirty.add(f"checkout:{session_id}")

    async def add(self, session: CheckoutSession) -> None:
        self._work.checkout_sessions[session.id] = replace(session)
        self._dirty.add(f"checkout:{session.id}")

    async def get(self, session_id: str, merchant_id: str | None = None) -> CheckoutSession | None:
        session = self._work.checkout_sessions.get(session_id)
        if session is None or merchant_id not in (None, session.merchant_id):
            return None
        return self._read(session)

    async def get_many(self, session_ids: Sequence[str]) -> list[CheckoutSession]:
        sessions = self._work.checkout_sessions
        return [self._read(sessions[i]) for i in session_ids if i in sessions]

    async def complete(self, session_id: str, payment_id: str, paid: bool, at: datetime) -> bool:
        session = self._work.checkout_sessions.get(session_id)
        if session is None or session.status is CheckoutStatus.COMPLETE:
            return False
        payment_status = CheckoutPaymentStatus.PAID if paid else CheckoutPaymentStatus.UNPAID
        self._update(
            session_id,
            status=CheckoutStatus.COMPLETE,
            payment_status=payment_status,
            payment_id=payment_id,
            updated_at=at,
        )
        return True

    async def count_decline(self, session_id: str, payment_id: str, at: datetime) -> int | None:
        session = self._work.checkout_sessions.get(session_id)
        if session is None or session.status is not CheckoutStatus.OPEN:
            return None
        self._update(
            session_id, declines=session.declines + 1, payment_id=payment_id, updated_at=at
        )
        return session.declines + 1

    async def attach_payment(self, session_id: str, payment_id: str, at: datetime) -> None:
        session = self._work.checkout_sessions.get(session_id)
        if session is not None and session.status is CheckoutStatus.OPEN:
            self._update(session_id, payment_id=payment_id, updated_at=at)

    async def expire(self, session_id: str, at: datetime) -> bool:
        session = self._work.checkout_sessions.get(session_id)
        if session is None or session.status is not CheckoutStatus.OPEN:
            return False
        if self._pending(session_id):
            return False
        self._update(session_id, status=CheckoutStatus.EXPIRED, updated_at=at)
        return True

    async def expire_due(self, now: datetime, limit: int) -> list[tuple[str, str]]:
        due = sorted(
            (s for s in self._work.checkout_sessions.values() if s.expires_at <= now),
            key=lambda s: s.expires_at,
        )
        expired = [(s.id, s.merchant_id) for s in due if await self.expire(s.id, now)]
        return expired[:limit]


class FakeUnitOfWork:
    def __init__(self, store: FakeStore, *, read_only: bool = False) -> None:
        self._store = store
        self.read_only = read_only
        self._work: FakeStore | None = None
        self._dirty: set[str] = set()
        self._payments: FakePaymentRepository | None = None
        self._merchants: FakeMerchantRepository | None = None
        self._cards: FakeCardRepository | None = None
        self._operations: FakeOperationRepository | None = None
        self._events: FakeEventRepository | None = None
        self._checkout_sessions: FakeCheckoutSessionRepository | None = None
        self.committed = False

    @property
    def payments(self) -> FakePaymentRepository:
        assert self._payments is not None, "used outside 'async with'"
        return self._payments

    @property
    def merchants(self) -> FakeMerchantRepository:
        assert self._merchants is not None, "used outside 'async with'"
        return self._merchants

    @property
    def operations(self) -> FakeOperationRepository:
        assert self._operations is not None, "used outside 'async with'"
        return self._operations

    @property
    def cards(self) -> FakeCardRepository:
        assert self._cards is not None, "used outside 'async with'"
        return self._cards

    @property
    def events(self) -> FakeEventRepository:
        assert self._events is not None, "used outside 'async with'"
        return self._events

    @property
    def checkout_sessions(self) -> FakeCheckoutSessionRepository:
        assert self._checkout_sessions is not None, "used outside 'async with'"
        return self._checkout_sessions

    async def __aenter__(self) -> Self:
        self._work = self._store.snapshot()
        self._dirty = set()
        self._payments = FakePaymentRepository(self._work, self._store, self._dirty)
        self._merchants = FakeMerchantRepository(self._work, self._store, self._dirty)
        self._cards = FakeCardRepository(self._work, self._dirty)
        self._operations = FakeOperationRepository(self._work, self._store, self._dirty)
        self._events = FakeEventRepository(self._work, self._dirty)
        self._checkout_sessions = FakeCheckoutSessionRepository(self._work, self._dirty)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Whatever was not committed is dropped with the working copy (a rollback).
        self._work = None
        self._payments = None
        self._merchants = None
        self._cards = None
        self._operations = None
        self._events = None
        self._checkout_sessions = None

    async def commit(self) -> None:
        work = self._work
        assert work is not None, "commit outside the unit of work"
        if self.read_only and self._dirty:
            raise AssertionError("a read-only unit of work wrote data")
        for item in sorted(self._dirty):
            kind, _, ident = item.partition(":")
            if kind == "merchant":
                self._store.merchants[ident] = work.merchants[ident]
                self._store.merchant_created[ident] = work.merchant_created[ident]
            elif kind == "key":
                self._store.keys[ident] = copy.deepcopy(work.keys[ident])
            elif kind == "operation":
                self._store.operations[ident] = copy.deepcopy(work.operations[ident])
            elif kind == "event":
                self._store.events[ident] = work.events[ident]
            elif kind == "checkout":
                self._store.checkout_sessions[ident] = work.checkout_sessions[ident]
            else:
                self._store.payments[item] = copy.deepcopy(work.payments[item])
        self._dirty.clear()
        self._store.commits += 1
        self.committed = True


class FakeUnitOfWorkFactory:
    def __init__(self, store: FakeStore) -> None:
        self.store = store
        self.opened: list[FakeUnitOfWork] = []

    def __call__(
        self, *, read_only: bool = False, single_statement: bool = False
    ) -> FakeUnitOfWork:
        uow = FakeUnitOfWork(self.store, read_only=read_only)
        self.opened.append(uow)
        return uow

    async def ping(self) -> None:
        pass


_OUTCOMES = {
    "4242424242424242": ("0", None),
    "4000000000000002": ("100", "insufficient_funds"),
    "4000000000009995": ("200", None),
    "4000000000003220": ("0", None),  # CHALLENGE_CARD, once authenticated
    "4000000000003055": ("0", None),  # FRICTIONLESS_CARD, likewise
}


# The bank simulator's 3-D Secure test cards (docs/design.md, 3-D Secure).
CHALLENGE_CARD = "4000000000003220"
FRICTIONLESS_CARD = "4000000000003055"
_ENROLLED = {CHALLENGE_CARD: "challenge", FRICTIONLESS_CARD: "frictionless"}


@dataclass
class FakeBank:
    """Records every deposit; ``fault`` makes the next deposits fail that way.

    As the issuer's access control server it challenges CHALLENGE_CARD (``answer_challenge``
    plays the shopper) and lets FRICTIONLESS_CARD through; a deposit of either needs the
    authentication, as at the simulator.
    """

    fault: BankFault | None = None
    authentication_fault: BankFault | None = None  # the same, for 3-D Secure calls
    deposits: list[tuple[str, PaymentRequest]] = field(default_factory=list)
    deposit_authentications: dict[str, str | None] = field(default_factory=dict)
    authentications: dict[str, Authentication] = field(default_factory=dict)
    return_urls: dict[str, str] = field(default_factory=dict)
    answers: dict[str, BankAnswer] = field(default_factory=dict)
    operations: list[tuple[OperationKind, str, str, int]] = field(default_factory=list)
    operation_answers: dict[str, BankAnswer] = field(default_factory=dict)
    operation_answers_default: BankAnswer | None = None  # e.g. a declined refund

    async def deposit(
        self, payment_id: str, request: PaymentRequest, authentication_id: str | None = None
    ) -> BankAnswer | BankFault:
        if self.fault is BankFault.NOT_SENT or self.fault is BankFault.REJECTED:
            return self.fault
        self.deposits.append((payment_id, request))
        self.deposit_authentications[payment_id] = authentication_id
        if payment_id not in self.answers:
            code, reason = _OUTCOMES.get(request.pan, ("100", "card_not_supported"))
            authentication = self.authentications.get(payment_id)
            if request.pan in _ENROLLED and not (
                authentication is not None
                and authentication.id == authentication_id
                and authentication.status is AuthenticationStatus.AUTHENTICATED
            ):
                code, reason = "100", "authentication_required"
            self.answers[payment_id] = BankAnswer(code, reason, str(uuid.uuid4()))
        if self.fault is BankFault.UNCERTAIN:
            return self.fault
        return self.answers[payment_id]

    async def inquire(self, payment_id: str) -> BankAnswer | BankFault | None:
        return self.answers.get(payment_id)

    async def operate(
        self, kind: OperationKind, operation_id: str, payment_id: str, amount: int
    ) -> BankAnswer | BankFault:
        if self.fault is BankFault.NOT_SENT or self.fault is BankFault.REJECTED:
            return self.fault
        self.operations.append((kind, operation_id, payment_id, amount))
        answer = self.operation_answers_default or BankAnswer("0", None, str(uuid.uuid4()))
        self.operation_answers.setdefault(operation_id, answer)
        if self.fault is BankFault.UNCERTAIN:
            return self.fault
        return self.operation_answers[operation_id]

    async def inquire_operation(
        self, kind: OperationKind, operation_id: str
    ) -> BankAnswer | BankFault | None:
        return self.operation_answers.get(operation_id)

    async def authenticate(
        self, payment_id: str, request: PaymentRequest, return_url: str
    ) -> Authentication | BankFault:
        if self.authentication_fault is not None:
            return self.authentication_fault
        flow = _ENROLLED.get(request.pan)
        status = {
            "challenge": AuthenticationStatus.CHALLENGE_REQUIRED,
            "frictionless": AuthenticationStatus.AUTHENTICATED,
        }.get(flow or "", AuthenticationStatus.NOT_ENROLLED)
        self.return_urls[payment_id] = return_url
        self.authentications[payment_id] = Authentication(
            id=f"auth-{payment_id}",
            status=status,
            flow=flow,
            challenge_url=f"https://bank.test/3ds/challenge/{payment_id}" if flow else None,
            eci="05" if status is AuthenticationStatus.AUTHENTICATED else None,
            version="2.2.0",
        )
        return self.authentications[payment_id]

    async def authentication(self, payment_id: str) -> Authentication | BankFault | None:
        if self.authentication_fault is not None:
            return self.authentication_fault
        return self.authentications.get(payment_id)

    def answer_challenge(self, payment_id: str, *, passed: bool) -> None:
        """The shopper answers the challenge on the bank's page, right or wrong."""
        authentication = self.authentications[payment_id]
        assert authentication.status is AuthenticationStatus.CHALLENGE_REQUIRED
        self.authentications[payment_id] = replace(
            authentication,
            status=AuthenticationStatus.AUTHENTICATED if passed else AuthenticationStatus.FAILED,
            eci="05" if passed else None,
        )

    def settle(self, payment_id: str, code: str = "0") -> None:
        """The bank finishes a pending deposit."""
        previous = self.answers[payment_id]
        self.answers[payment_id] = BankAnswer(code, None, previous.transaction_id)


class GatedBank(FakeBank):
    """A FakeBank whose deposits wait until the test opens the gate; ``waiting`` counts the
    deposits that reached it."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()
        self.waiting = 0

    async def deposit(
        self, payment_id: str, request: PaymentRequest, authentication_id: str | None = None
    ) -> BankAnswer | BankFault:
        self.entered.set()
        self.waiting += 1
        await self.gate.wait()
        return await super().deposit(payment_id, request, authentication_id)
