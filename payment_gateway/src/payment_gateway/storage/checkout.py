"""SQL repository of checkout sessions (docs/design.md, Hosted payment page); no commits."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, exists, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from payment_gateway.domain.checkout import (
    PENDING_PAYMENT_STATUSES,
    CheckoutPaymentStatus,
    CheckoutSession,
    CheckoutStatus,
)
from payment_gateway.storage.repositories import skip_locked
from payment_gateway.storage.tables import checkout_sessions, merchants, payments

_sessions = checkout_sessions.c
_PENDING = sorted(status.value for status in PENDING_PAYMENT_STATUSES)
_OPEN = CheckoutStatus.OPEN.value

# A payment of the session that may still succeed (over payments' session index).
_payment_pending = (
    exists()
    .where(payments.c.checkout_session_id == _sessions.id, payments.c.status.in_(_PENDING))
    .correlate(checkout_sessions)
)

_session_columns = select(
    _sessions.id,
    _sessions.merchant_id,
    _sessions.status,
    _sessions.payment_status,
    _sessions.amount,
    _sessions.currency,
    _sessions.reference,
    _sessions.success_url,
    _sessions.cancel_url,
    _sessions.capture,
    _sessions.url,
    _sessions.payment_id,
    _sessions.declines,
    _sessions.created_at,
    _sessions.updated_at,
    _sessions.expires_at,
    merchants.c.name.label("merchant_name"),
    _payment_pending.label("payment_pending"),
).join(merchants, merchants.c.id == _sessions.merchant_id)


def _to_session(row: Any) -> CheckoutSession:
    return CheckoutSession(
        id=row.id,
        merchant_id=row.merchant_id,
        status=CheckoutStatus(row.status),
        amount=row.amount,
        currency=row.currency,
        reference=row.reference,
        success_url=row.success_url,
        cancel_url=row.cancel_url,
        capture=bool(row.capture),
        url=row.url,
        created_at=row.created_at,
        updated_at=row.updated_at,
        expires_at=row.expires_at,
        payment_status=CheckoutPaymentStatus(row.payment_status),
        payment_id=row.payment_id,
        declines=row.declines,
        merchant_name=row.merchant_name,
        payment_pending=bool(row.payment_pending),
    )


def _expirable(now: datetime | None = None) -> list[ColumnElement[bool]]:
    """Open, not waiting for a payment that may still succeed (and, given ``now``, due)."""
    conditions = [_sessions.status == _OPEN, ~_payment_pending]
    if now is not None:
        conditions.append(_sessions.expires_at <= now)
    return conditions


class SqlCheckoutSessionRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def add(self, session: CheckoutSession) -> None:
        row = {
            "id": session.id,
            "merchant_id": session.merchant_id,
            "status": session.status.value,
            "payment_status": session.payment_status.value,
            "amount": session.amount,
            "currency": session.currency,
            "reference": session.reference,
            "success_url": session.success_url,
            "cancel_url": session.cancel_url,
            "capture": session.capture,
            "url": session.url,
            "created_at": session.created_at,
            "updated_at": session.updated_at,
            "expires_at": session.expires_at,
        }
        await self._connection.execute(checkout_sessions.insert(), row)

    async def get(self, session_id: str, merchant_id: str | None = None) -> CheckoutSession | None:
        """The session; with ``merchant_id``, only if it is that merchant's."""
        statement = _session_columns.where(_sessions.id == session_id)
        if merchant_id is not None:
            statement = statement.where(_sessions.merchant_id == merchant_id)
        row = (await self._connection.execute(statement)).first()
        return None if row is None else _to_session(row)

    async def get_many(self, session_ids: Sequence[str]) -> list[CheckoutSession]:
        statement = _session_columns.where(_sessions.id.in_(session_ids))
        return [_to_session(row) for row in await self._connection.execute(statement)]

    async def complete(self, session_id: str, payment_id: str, paid: bool, at: datetime) -> bool:
        """open (or expired meanwhile: the money is taken all the same) -> complete."""
        statement = (
            update(checkout_sessions)
            .where(
                _sessions.id == session_id,
                _sessions.status.in_([_OPEN, CheckoutStatus.EXPIRED.value]),
            )
            .values(
                status=CheckoutStatus.COMPLETE.value,
                payment_status=(
                    CheckoutPaymentStatus.PAID if paid else CheckoutPaymentStatus.UNPAID
                ).value,
                payment_id=payment_id,
                updated_at=at,
            )
        )
        return bool((await self._connection.execute(statement)).rowcount)

    async def count_decline(self, session_id: str, payment_id: str, at: datetime) -> int | None:
        """One more declined payment of an open session: the count now (None: not open)."""
        statement = (
            update(checkout_sessions)
            .where(_sessions.id == session_id, _sessions.status == _OPEN)
            .values(declines=_sessions.declines + 1, payment_id=payment_id, updated_at=at)
        )
        if not (await self._connection.execute(statement)).rowcount:
            return None
        declines: int | None = await self._connection.scalar(
            select(_sessions.declines).where(_sessions.id == session_id)
        )
        return declines

    async def attach_payment(self, session_id: str, payment_id: str, at: datetime) -> None:
        """Show the payment under way (processing, awaiting 3-D Secure) on the session."""
        await self._connection.execute(
            update(checkout_sessions)
            .where(_sessions.id == session_id, _sessions.status == _OPEN)
            .values(payment_id=payment_id, updated_at=at)
        )

    async def expire(self, session_id: str, at: datetime) -> bool:
        """open -> expired, unless a payment of it may still succeed."""
        statement = (
            update(checkout_sessions)
            .where(_sessions.id == session_id, *_expirable())
            .values(status=CheckoutStatus.EXPIRED.value, updated_at=at)
        )
        return bool((await self._connection.execute(statement)).rowcount)

    async def expire_due(self, now: datetime, limit: int) -> list[tuple[str, str]]:
        """Expire up to ``limit`` open sessions past their expiry: (id, merchant id) of each.

        The due rows are locked with SKIP LOCKED (SQLite: its write lock), so replicas
        expire disjoint ones; the guarded UPDATE leaves a session a payment completed or is
        still completing.
        """
        due = skip_locked(
            select(_sessions.id, _sessions.merchant_id)
            .where(*_expirable(now))
            .order_by(_sessions.expires_at)
            .limit(limit),
            self._connection,
        )
        expired: list[tuple[str, str]] = []
        for row in (await self._connection.execute(due)).all():
            if await self.expire(row.id, now):
                expired.append((row.id, row.merchant_id))
        return expired
