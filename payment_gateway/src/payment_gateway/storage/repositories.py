"""SQL repositories: every query a composed Core statement; no commits in here."""

from __future__ import annotations

import functools
import hmac
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Row,
    Select,
    Table,
    Update,
    and_,
    bindparam,
    func,
    insert,
    literal_column,
    null,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from payment_gateway.domain.card import CardSummary
from payment_gateway.domain.merchant import ApiKeyInfo, Merchant
from payment_gateway.domain.operations import Operation, OperationKind, OperationStatus
from payment_gateway.domain.payment import (
    OPEN_STATUSES,
    Payment,
    PaymentStatus,
    RetrySchedule,
    statuses_that_may_become,
)
from payment_gateway.domain.three_d_secure import ThreeDSecure
from payment_gateway.service.ids import new_id
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
from payment_gateway.storage.bulk_writes import BulkWriter
from payment_gateway.storage.tables import api_keys, cards, merchants, operations, payments

_OPEN = [status.value for status in OPEN_STATUSES]

_payment_with_card = select(
    payments.c.id,
    payments.c.merchant_id,
    payments.c.status,
    payments.c.amount,
    payments.c.currency,
    payments.c.reference,
    payments.c.code,
    payments.c.decline_reason,
    payments.c.tracking_id,
    payments.c.created_at,
    payments.c.updated_at,
    payments.c.request_hash,
    payments.c.capture,
    payments.c.amount_captured,
    payments.c.amount_refunded,
    payments.c.amount_refund_pending,
    payments.c.cancellation_reason,
    payments.c.three_d_secure,
    payments.c.checkout_session_id,
    cards.c.last4,
    cards.c.brand,
    cards.c.expiry_month,
    cards.c.expiry_year,
).join(cards, cards.c.id == payments.c.card_id)


_insert_card = insert(cards)
_insert_payment = insert(payments)


_NULLABLE_OUTCOME_FIELDS = (
    "code",
    "decline_reason",
    "next_attempt_at",
    "tracking_id",
    "three_d_secure",
)
_NULLABLE_CARD_COLUMNS = tuple(column.name for column in cards.c if column.nullable)
_NULLABLE_PAYMENT_COLUMNS = tuple(column.name for column in payments.c if column.nullable)


def without_all_null(
    rows: list[dict[str, Any]], nullable: Sequence[str]
) -> tuple[frozenset[str], list[dict[str, Any]]]:
    """The nullable fields that are None in every row, and the rows without them.

    MariaDB's bulk execution (asyncmy's executemany: every row bound in binary, one round
    trip) refuses a column that is NULL in every row, and asyncmy then falls back to one
    multi-row statement of escaped text: so went every batch of API payments, whose 3-D
    Secure and checkout columns are NULL. Left out, an INSERT's column takes its default,
    NULL, and an UPDATE's is not SET at all.
    """
    # A field missing from the rows is left out already (a column the INSERT does not set).
    nulls = frozenset(name for name in nullable if all(row.get(name) is None for row in rows))
    if not nulls:
        return nulls, rows
    return nulls, [{k: v for k, v in row.items() if k not in nulls} for row in rows]


@functools.cache
def _guarded_update(new_status: PaymentStatus, nulls: frozenset[str]) -> Update:
    """UPDATE to ``new_status``, applying only from a status allowed to become it.

    Built once per status and set of NULL fields, with the allowed statuses as SQL literals
    rather than an expanding IN parameter, so each execution reuses the compiled statement as
    it is. ``nulls`` names the fields that are NULL in every row: they are written as SQL
    literals, since MariaDB's bulk execution (one round trip for a batch) refuses an all-NULL
    parameter.
    """
    allowed = sorted(status.value for status in statuses_that_may_become(new_status))
    values: dict[str, Any] = {"status": new_status.value, "updated_at": bindparam("updated_at")}
    for name in ("code", "decline_reason", "next_attempt_at"):
        values[name] = null() if name in nulls else bindparam(name)
    if "three_d_secure" not in nulls:
        # An authentication's answer; a row of the batch without one keeps what it has.
        values["three_d_secure"] = func.coalesce(
            bindparam("three_d_secure", type_=payments.c.three_d_secure.type),
            payments.c.three_d_secure,
        )
    if "tracking_id" not in nulls:
        # Keep a tracking id already recorded when this answer carries none.
        values["tracking_id"] = func.coalesce(bindparam("tracking_id"), payments.c.tracking_id)
    if new_status is PaymentStatus.SUCCEEDED:
        values["amount_captured"] = payments.c.amount  # a deposit that captures takes it all
    return (
        update(payments)
        .where(
            payments.c.id == bindparam("payment_id"),
            payments.c.status.in_([literal_column(f"'{value}'") for value in allowed]),
        )
        .values(**values)
    )


def _card_row(entry: NewPayment) -> dict[str, Any]:
    payment, card, summary = entry.payment, entry.card, entry.payment.card
    return {
        "id": card.id,
        "merchant_id": payment.merchant_id,
        "pan_encrypted": card.pan_encrypted,
        "holder_name_encrypted": card.holder_name_encrypted,
        "bin": card.bin,
        "last4": summary.last4,
        "brand": summary.brand,
        "expiry_month": summary.expiry_month,
        "expiry_year": summary.expiry_year,
        "created_at": payment.created_at,
    }


def _payment_row(entry: NewPayment) -> dict[str, Any]:
    payment, idempotency = entry.payment, entry.idempotency
    return {
        "id": payment.id,
        "merchant_id": payment.merchant_id,
        "card_id": entry.card.id,
        "status": payment.status.value,
        "amount": payment.amount,
        "currency": payment.currency,
        "reference": payment.reference,
        "idempotency_key": idempotency.key if idempotency else None,
        "request_hash": idempotency.request_hash if idempotency else None,
        "created_at": payment.created_at,
        "updated_at": payment.updated_at,
        "next_attempt_at": entry.next_attempt_at,
        "attempts": 0,
        "capture": payment.capture,
        "three_d_secure": _three_d_secure_record(payment.three_d_secure),
        "checkout_session_id": payment.checkout_session_id,
    }


def _transition_params(transition: StatusTransition) -> dict[str, Any]:
    resolution = transition.resolution
    return {
        "payment_id": transition.payment_id,
        "code": resolution.code,
        "decline_reason": resolution.decline_reason,
        "updated_at": transition.at,
        "next_attempt_at": transition.next_attempt_at,
        "tracking_id": resolution.tracking_id,
        "three_d_secure": _three_d_secure_record(resolution.three_d_secure),
    }


def _three_d_secure_record(three_d_secure: ThreeDSecure | None) -> dict[str, Any] | None:
    return None if three_d_secure is None else three_d_secure.to_record()


def _to_payment(row: Any) -> Payment:
    return Payment(
        id=row.id,
        merchant_id=row.merchant_id,
        status=PaymentStatus(row.status),
        amount=row.amount,
        currency=row.currency,
        reference=row.reference,
        card=CardSummary(row.last4, row.brand, row.expiry_month, row.expiry_year),
        created_at=row.created_at,
        updated_at=row.updated_at,
        code=row.code,
        decline_reason=row.decline_reason,
        tracking_id=row.tracking_id,
        capture=bool(row.capture),
        amount_captured=row.amount_captured,
        amount_refunded=row.amount_refunded,
        amount_refund_pending=row.amount_refund_pending,
        cancellation_reason=row.cancellation_reason,
        three_d_secure=(
            None if row.three_d_secure is None else ThreeDSecure.from_record(row.three_d_secure)
        ),
        checkout_session_id=row.checkout_session_id,
    )


def _payments_index(*columns: str) -> str:
    return next(
        str(index.name)
        for index in payments.indexes
        if [column.name for column in index.columns] == list(columns)
    )


_BY_MERCHANT = _payments_index("merchant_id", "created_at")
_BY_STATUS = _payments_index("merchant_id", "status", "created_at", "id")
_BY_REFERENCE = _payments_index("merchant_id", "reference", "created_at", "id")


def _listing_index(filters: PaymentFilters) -> str:
    if filters.reference is not None:  # one order's payments: the fewest rows
        return _BY_REFERENCE
    if filters.status is not None:
        return _BY_STATUS
    return _BY_MERCHANT


def _filter_conditions(filters: PaymentFilters) -> list[ColumnElement[bool]]:
    created = payments.c.created_at
    conditions: list[ColumnElement[bool]] = []
    if filters.created_gte is not None:
        conditions.append(created >= filters.created_gte)
    if filters.created_gt is not None:
        conditions.append(created > filters.created_gt)
    if filters.created_lte is not None:
        conditions.append(created <= filters.created_lte)
    if filters.created_lt is not None:
        conditions.append(created < filters.created_lt)
    if filters.status is not None:
        conditions.append(payments.c.status == filters.status.value)
    if filters.reference is not None:
        conditions.append(payments.c.reference == filters.reference)
    return conditions


def beyond(table: Table, position: ListPosition, *, older: bool) -> ColumnElement[bool]:
    """Rows of ``table`` strictly past ``position`` in (created_at, id) order.

    Spelled as a range on created_at plus a tie-break on id rather than a row comparison
    ``(created_at, id) < (:c, :i)``, which MariaDB does not turn into an index range.
    """
    created, row_id = table.c.created_at, table.c.id
    if older:
        return and_(
            created <= position.created_at,
            or_(created < position.created_at, row_id < position.id),
        )
    return and_(
        created >= position.created_at,
        or_(created > position.created_at, row_id > position.id),
    )


def listing_statement(
    merchant_id: str,
    filters: PaymentFilters,
    limit: int,
    older_than: ListPosition | None,
    newer_than: ListPosition | None,
) -> Select[Any]:
    """Keyset pagination: the merchant's rows past the cursor, read in index order.

    Every index the listing uses starts with merchant_id and ends with created_at (and the
    primary key, which InnoDB appends to each secondary index), so a page is a short range
    scan wherever it starts: no OFFSET, no sort. MySQL and MariaDB are told which index:
    left to itself, MariaDB 10.11 reads a deep page by the merchant_id prefix alone (a "ref"
    access from the newest row, filtering created_at as it goes: 900,000 rows for a page
    900,000 rows in) instead of the range the cursor bounds (bench/listing.py measures it).
    """
    conditions = [payments.c.merchant_id == merchant_id, *_filter_conditions(filters)]
    if older_than is not None:
        conditions.append(beyond(payments, older_than, older=True))
    if newer_than is not None:
        conditions.append(beyond(payments, newer_than, older=False))
    order = (
        (payments.c.created_at.asc(), payments.c.id.asc())
        if newer_than is not None
        else (payments.c.created_at.desc(), payments.c.id.desc())
    )
    return (
        _payment_with_card.where(*conditions)
        .order_by(*order)
        .limit(limit)
        .with_hint(payments, f"FORCE INDEX ({_listing_index(filters)})", dialect_name="mysql")
    )


class SqlPaymentListing:
    """The listing query of SqlPaymentRepository (kept apart from the write paths)."""

    _connection: AsyncConnection

    async def list_page(
        self,
        merchant_id: str,
        filters: PaymentFilters,
        limit: int,
        *,
        older_than: ListPosition | None = None,
        newer_than: ListPosition | None = None,
    ) -> list[Payment]:
        statement = listing_statement(merchant_id, filters, limit, older_than, newer_than)
        rows = (await self._connection.execute(statement)).all()
        return [_to_payment(row) for row in rows]


def skip_locked(statement: Select[Any], connection: AsyncConnection) -> Select[Any]:
    """FOR UPDATE SKIP LOCKED where the engine has it (SQLite's transaction holds its write
    lock already), so that replicas claiming due rows take disjoint ones."""
    if connection.dialect.name == "sqlite":
        return statement
    return statement.with_for_update(skip_locked=True)


async def _claim_due_rows(
    connection: AsyncConnection,
    table: Table,
    due: ColumnElement[bool],
    columns: Iterable[ColumnElement[Any]],
    limit: int,
    push_back: Callable[[Row[Any]], dict[str, Any]],
) -> list[Row[Any]]:
    """Claim up to ``limit`` due rows: the ones this replica moved on are its own.

    MySQL/MariaDB lock the rows with SKIP LOCKED so replicas take disjoint batches; on SQLite
    the transaction already holds the database's write lock. Either way the guarded UPDATE
    that pushes each row's ``next_attempt_at`` on is the claim other replicas see.
    """
    statement = skip_locked(
        select(*columns).where(due).order_by(table.c.next_attempt_at).limit(limit), connection
    )
    claimed: list[Row[Any]] = []
    for row in (await connection.execute(statement)).all():
        claim = update(table).where(table.c.id == row.id, due).values(**push_back(row))
        if (await connection.execute(claim)).rowcount:
            claimed.append(row)
    return claimed


class SqlPaymentRepository(SqlPaymentListing):
    def __init__(self, connection: AsyncConnection, bulk: BulkWriter) -> None:
        self._connection = connection
        self._bulk = bulk  # the group commit's writes: on the driver itself where it can

    async def add_many(self, entries: Sequence[NewPayment]) -> None:
        """Insert payments with their cards: two statements, however many payments."""
        _, card_rows = without_all_null(
            [_card_row(entry) for entry in entries], _NULLABLE_CARD_COLUMNS
        )
        _, payment_rows = without_all_null(
            [_payment_row(entry) for entry in entries], _NULLABLE_PAYMENT_COLUMNS
        )

        try:
            await self._bulk.execute_many(_insert_card, card_rows)
            await self._bulk.execute_many(_insert_payment, payment_rows)
        except IntegrityError as exc:
            # The only unique constraint a fresh uuid can hit is the idempotency claim.
            claimed = [entry.idempotency.key for entry in entries if entry.idempotency]
            if not claimed:
                raise
            raise DuplicateIdempotencyKey(claimed[0] if len(claimed) == 1 else None) from exc

    async def get(self, payment_id: str, merchant_id: str) -> Payment | None:
        statement = _payment_with_card.where(
            payments.c.id == payment_id, payments.c.merchant_id == merchant_id
        )
        row = (await self._connection.execute(statement)).first()
        return None if row is None else _to_payment(row)

    async def get_many(self, payment_ids: Sequence[str]) -> list[Payment]:
        statement = _payment_with_card.where(payments.c.id.in_(payment_ids))
        return [_to_payment(row) for row in await self._connection.execute(statement)]

    async def find_by_idempotency_key(self, merchant_id: str, key: str) -> KeyedPayment | None:
        statement = _payment_with_card.where(
            payments.c.merchant_id == merchant_id, payments.c.idempotency_key == key
        )
        row = (await self._connection.execute(statement)).first()
        return None if row is None else KeyedPayment(_to_payment(row), row.request_hash)

    async def release_idempotency_key(
        self, payment_id: str, key: str, created_before: datetime
    ) -> bool:
        statement = (
            update(payments)
            .where(
                payments.c.id == payment_id,
                payments.c.idempotency_key == key,
                payments.c.created_at < created_before,
            )
            .values(idempotency_key=None, request_hash=None)
        )
        result = await self._connection.execute(statement)
        return bool(result.rowcount)

    async def apply_transitions(self, transitions: Sequence[StatusTransition]) -> int:
        """Guarded transitions of many payments, one statement per target status.

        Returns how many rows changed; each payment is one row, so fewer than
        ``len(transitions)`` means some payment's status no longer allowed its transition.
        """
        by_status: dict[PaymentStatus, list[dict[str, Any]]] = {}
        for transition in transitions:
            by_status.setdefault(transition.resolution.status, []).append(
                _transition_params(transition)
            )

        changed = 0
        for status, all_rows in by_status.items():
            # A parameter named after a column would be SET as well: leave those out.
            nulls, rows = without_all_null(all_rows, _NULLABLE_OUTCOME_FIELDS)
            changed += await self._bulk.execute_many(_guarded_update(status, nulls), rows)
        return changed

    async def claim_due(
        self,
        now: datetime,
        limit: int,
        schedule: RetrySchedule,
    ) -> list[DuePayment]:
        """Claim open payments whose next look is due, pushing that look into the future."""
        due = and_(payments.c.status.in_(_OPEN), payments.c.next_attempt_at <= now)
        columns = (
            payments.c.id,
            payments.c.merchant_id,
            payments.c.status,
            payments.c.created_at,
            payments.c.updated_at,
            payments.c.attempts,
            payments.c.capture,
        )
        rows = await _claim_due_rows(
            self._connection,
            payments,
            due,
            columns,
            limit,
            lambda row: {
                "next_attempt_at": schedule.next_attempt_at(now, row.attempts),
                "attempts": payments.c.attempts + 1,
            },
        )
        return [
            DuePayment(
                row.id,
                row.merchant_id,
                row.status,
                row.created_at,
                row.updated_at,
                bool(row.capture),
            )
            for row in rows
        ]

    async def release_expired_idempotency_keys(self, created_before: datetime) -> int:
        statement = (
            update(payments)
            .where(payments.c.idempotency_key.is_not(None), payments.c.created_at < created_before)
            .values(idempotency_key=None, request_hash=None)
        )
        return int((await self._connection.execute(statement)).rowcount)

    async def oldest_open_created_at(self) -> datetime | None:
        # Only open payments have a next_attempt_at: its index finds them without a scan.
        statement = select(func.min(payments.c.created_at)).where(
            payments.c.next_attempt_at.is_not(None), payments.c.status.in_(_OPEN)
        )
        value: datetime | None = await self._connection.scalar(statement)
        return value

    # -- after the charge: captures, voids, refunds (docs/design.md, Capture and refunds)

    async def claim_settlement(self, payment_id: str, operation_id: str) -> bool:
        statement = (
            update(payments)
            .where(
                payments.c.id == payment_id,
                payments.c.status == PaymentStatus.AUTHORIZED.value,
                payments.c.settlement_operation_id.is_(None),
            )
            .values(settlement_operation_id=operation_id)
        )
        return bool((await self._connection.execute(statement)).rowcount)

    async def release_settlement(self, payment_id: str, operation_id: str) -> None:
        await self._connection.execute(
            update(payments)
            .where(
                payments.c.id == payment_id,
                payments.c.settlement_operation_id == operation_id,
            )
            .values(settlement_operation_id=None)
        )

    async def capture(self, payment_id: str, operation_id: str, amount: int, at: datetime) -> bool:
        return await self._settle_authorization(
            payment_id,
            operation_id,
            status=PaymentStatus.SUCCEEDED.value,
            amount_captured=amount,
            updated_at=at,
        )

    async def cancel(self, payment_id: str, operation_id: str, reason: str, at: datetime) -> bool:
        return await self._settle_authorization(
            payment_id,
            operation_id,
            status=PaymentStatus.CANCELED.value,
            cancellation_reason=reason,
            updated_at=at,
        )

    async def _settle_authorization(
        self, payment_id: str, operation_id: str, **values: object
    ) -> bool:
        statement = (
            update(payments)
            .where(
                payments.c.id == payment_id,
                payments.c.status == PaymentStatus.AUTHORIZED.value,
                payments.c.settlement_operation_id == operation_id,
            )
            .values(settlement_operation_id=None, next_attempt_at=None, **values)
        )
        return bool((await self._connection.execute(statement)).rowcount)

    async def reserve_refund(self, payment_id: str, amount: int) -> bool:
        """The guard that keeps refunds within what was captured, whatever the concurrency.

        One conditional UPDATE: the row lock it takes serialises racing refunds, and each
        sees the others' reservations, so two refunds of the last 60 of 100 cannot both pass.
        """
        reserved = payments.c.amount_refunded + payments.c.amount_refund_pending
        statement = (
            update(payments)
            .where(
                payments.c.id == payment_id,
                payments.c.status == PaymentStatus.SUCCEEDED.value,
                reserved + amount <= payments.c.amount_captured,
            )
            .values(amount_refund_pending=payments.c.amount_refund_pending + amount)
        )
        return bool((await self._connection.execute(statement)).rowcount)

    async def settle_refund(self, payment_id: str, amount: int, *, succeeded: bool) -> None:
        values: dict[str, Any] = {
            "amount_refund_pending": payments.c.amount_refund_pending - amount
        }
        if succeeded:
            values["amount_refunded"] = payments.c.amount_refunded + amount
        await self._connection.execute(
            update(payments).where(payments.c.id == payment_id).values(**values)
        )

    async def claim_expired_authorizations(
        self, now: datetime, limit: int, lease_seconds: float
    ) -> list[DueAuthorization]:
        """Authorizations whose hold has expired (next_attempt_at is their expiry), claimed.

        Claimed as the reconciler claims payments: the expiry moves on by the lease, so
        another replica leaves them alone while this one cancels them.
        """
        due = and_(
            payments.c.status == PaymentStatus.AUTHORIZED.value,
            payments.c.next_attempt_at <= now,
            payments.c.settlement_operation_id.is_(None),
        )
        columns = (payments.c.id, payments.c.merchant_id)
        lease = now + timedelta(seconds=lease_seconds)
        rows = await _claim_due_rows(
            self._connection, payments, due, columns, limit, lambda _row: {"next_attempt_at": lease}
        )
        return [DueAuthorization(row.id, row.merchant_id) for row in rows]

    async def claim_unanswered_challenges(
        self, now: datetime, limit: int, lease_seconds: float
    ) -> list[str]:
        """Payments whose 3-D Secure challenge is past its deadline (their next_attempt_at),
        claimed for a lease as authorizations are."""
        due = and_(
            payments.c.status == PaymentStatus.REQUIRES_ACTION.value,
            payments.c.next_attempt_at <= now,
        )
        lease = now + timedelta(seconds=lease_seconds)
        rows = await _claim_due_rows(
            self._connection,
            payments,
            due,
            (payments.c.id,),
            limit,
            lambda _row: {"next_attempt_at": lease},
        )
        return [row.id for row in rows]

    async def card_of(self, payment_id: str) -> StoredCard | None:
        """The payment's card as stored (encrypted), to deposit after 3-D Secure."""
        statement = (
            select(cards.c.id, cards.c.pan_encrypted, cards.c.holder_name_encrypted, cards.c.bin)
            .join(payments, payments.c.card_id == cards.c.id)
            .where(payments.c.id == payment_id)
        )
        row = (await self._connection.execute(statement)).first()
        if row is None or row.pan_encrypted == b"":
            return None
        return StoredCard(row.id, row.pan_encrypted, row.holder_name_encrypted, row.bin)


class SqlMerchantRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def by_key_hash(self, key_hash: str) -> Merchant | None:
        statement = (
            select(merchants.c.id, merchants.c.name, api_keys.c.key_hash)
            .join(api_keys, api_keys.c.merchant_id == merchants.c.id)
            .where(api_keys.c.key_hash == key_hash, api_keys.c.revoked_at.is_(None))
        )
        row = (await self._connection.execute(statement)).first()
        # The index found the row; confirm in constant time so timing reveals nothing.
        if row is None or not hmac.compare_digest(row.key_hash, key_hash):
            return None
        return Merchant(row.id, row.name)

    async def by_name(self, name: str) -> Merchant | None:
        statement = select(merchants.c.id, merchants.c.name).where(merchants.c.name == name)
        row = (await self._connection.execute(statement)).first()
        return None if row is None else Merchant(row.id, row.name)

    async def add(self, merchant: Merchant, now: datetime) -> None:
        try:
            await self._connection.execute(
                insert(merchants), {"id": merchant.id, "name": merchant.name, "created_at": now}
            )
        except IntegrityError as exc:
            raise DuplicateMerchant(merchant.name) from exc

    async def add_key(self, merchant_id: str, key_hash: str, prefix: str, now: datetime) -> None:
        await self._connection.execute(
            insert(api_keys),
            {
                "id": new_id(),
                "merchant_id": merchant_id,
                "key_hash": key_hash,
                "prefix": prefix,
                "created_at": now,
            },
        )

    async def list_keys(self) -> list[ApiKeyInfo]:
        statement = (
            select(
                api_keys.c.id,
                merchants.c.name,
                api_keys.c.prefix,
                api_keys.c.created_at,
                api_keys.c.revoked_at,
            )
            .join(merchants, merchants.c.id == api_keys.c.merchant_id)
            .order_by(merchants.c.name, api_keys.c.created_at)
        )
        rows = (await self._connection.execute(statement)).all()
        return [ApiKeyInfo(r.id, r.name, r.prefix, r.created_at, r.revoked_at) for r in rows]

    async def revoke_key(self, prefix: str, now: datetime) -> int:
        statement = (
            update(api_keys)
            .where(api_keys.c.prefix == prefix, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        return int((await self._connection.execute(statement)).rowcount)


_TERMINAL = sorted(status.value for status in PaymentStatus if status.is_terminal)


class SqlCardRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def erase_card_data(self, created_before: datetime, limit: int, now: datetime) -> int:
        """Empty the encrypted PAN and holder name of up to ``limit`` cards.

        Only cards of terminal payments created before ``created_before``; last four, brand
        and expiry stay, so the payment still reads as before. Safe for replicas to run at
        once: a card already erased is left alone and not counted.
        """
        due = (
            select(cards.c.id)
            .join(payments, payments.c.card_id == cards.c.id)
            .where(
                cards.c.erased_at.is_(None),
                cards.c.created_at < created_before,
                payments.c.status.in_(_TERMINAL),
            )
            .order_by(cards.c.created_at)
            .limit(limit)
        )
        ids = list((await self._connection.scalars(due)).all())
        if not ids:
            return 0
        erase = (
            update(cards)
            .where(cards.c.id.in_(ids), cards.c.erased_at.is_(None))
            .values(pan_encrypted=b"", holder_name_encrypted=None, erased_at=now)
        )
        return int((await self._connection.execute(erase)).rowcount)


_operation_columns = select(
    operations.c.id,
    operations.c.payment_id,
    operations.c.merchant_id,
    operations.c.kind,
    operations.c.amount,
    operations.c.currency,
    operations.c.status,
    operations.c.created_at,
    operations.c.updated_at,
    operations.c.reason,
    operations.c.reference,
    operations.c.failure_reason,
    operations.c.tracking_id,
    operations.c.request_hash,
    operations.c.attempts,
)


def _to_operation(row: Any) -> Operation:
    return Operation(
        id=row.id,
        payment_id=row.payment_id,
        merchant_id=row.merchant_id,
        kind=OperationKind(row.kind),
        amount=row.amount,
        currency=row.currency,
        status=OperationStatus(row.status),
        created_at=row.created_at,
        updated_at=row.updated_at,
        reason=row.reason,
        reference=row.reference,
        failure_reason=row.failure_reason,
        tracking_id=row.tracking_id,
    )


class SqlOperationRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def add(self, new: NewOperation) -> None:
        operation, idempotency = new.operation, new.idempotency
        row = {
            "id": operation.id,
            "payment_id": operation.payment_id,
            "merchant_id": operation.merchant_id,
            "kind": operation.kind.value,
            "status": operation.status.value,
            "amount": operation.amount,
            "currency": operation.currency,
            "reason": operation.reason,
            "reference": operation.reference,
            "idempotency_key": idempotency.key if idempotency else None,
            "request_hash": idempotency.request_hash if idempotency else None,
            "created_at": operation.created_at,
            "updated_at": operation.updated_at,
            "next_attempt_at": new.next_attempt_at,
        }
        try:
            await self._connection.execute(insert(operations), row)
        except IntegrityError as exc:
            if idempotency is None:
                raise
            raise DuplicateIdempotencyKey(idempotency.key) from exc

    async def get(self, operation_id: str, merchant_id: str) -> Operation | None:
        statement = _operation_columns.where(
            operations.c.id == operation_id, operations.c.merchant_id == merchant_id
        )
        row = (await self._connection.execute(statement)).first()
        return None if row is None else _to_operation(row)

    async def find_by_idempotency_key(
        self, merchant_id: str, kind: OperationKind, key: str
    ) -> KeyedOperation | None:
        statement = _operation_columns.where(
            operations.c.merchant_id == merchant_id,
            operations.c.kind == kind.value,
            operations.c.idempotency_key == key,
        )
        row = (await self._connection.execute(statement)).first()
        return None if row is None else KeyedOperation(_to_operation(row), row.request_hash)

    async def list_for_payment(
        self, payment_id: str, merchant_id: str, kind: OperationKind, limit: int
    ) -> list[Operation]:
        statement = (
            _operation_columns.where(
                operations.c.payment_id == payment_id,
                operations.c.merchant_id == merchant_id,
                operations.c.kind == kind.value,
            )
            .order_by(operations.c.created_at.desc(), operations.c.id.desc())
            .limit(limit)
        )
        return [_to_operation(row) for row in await self._connection.execute(statement)]

    async def settle(self, settlement: OperationSettlement) -> bool:
        resolution = settlement.resolution
        values: dict[str, Any] = {
            "status": resolution.status.value,
            "failure_reason": resolution.failure_reason,
            "updated_at": settlement.at,
            "next_attempt_at": settlement.next_attempt_at,
            "tracking_id": func.coalesce(resolution.tracking_id, operations.c.tracking_id),
        }
        if resolution.status is OperationStatus.PENDING:
            values = {"next_attempt_at": settlement.next_attempt_at}
        statement = (
            update(operations)
            .where(
                operations.c.id == settlement.operation.id,
                operations.c.status == OperationStatus.PENDING.value,
            )
            .values(**values)
        )
        return bool((await self._connection.execute(statement)).rowcount)

    async def claim_due(
        self, now: datetime, limit: int, schedule: RetrySchedule
    ) -> list[Operation]:
        due = and_(
            operations.c.status == OperationStatus.PENDING.value,
            operations.c.next_attempt_at <= now,
        )
        rows = await _claim_due_rows(
            self._connection,
            operations,
            due,
            _operation_columns.selected_columns,
            limit,
            lambda row: {
                "next_attempt_at": schedule.next_attempt_at(now, row.attempts),
                "attempts": operations.c.attempts + 1,
            },
        )
        return [_to_operation(row) for row in rows]

    async def release_expired_idempotency_keys(self, created_before: datetime) -> int:
        statement = (
            update(operations)
            .where(
                operations.c.idempotency_key.is_not(None),
                operations.c.created_at < created_before,
            )
            .values(idempotency_key=None, request_hash=None)
        )
        return int((await self._connection.execute(statement)).rowcount)
