"""SQL of the event outbox and of webhook delivery (docs/design.md, Events and webhooks).

Deliveries are claimed as the reconciler claims payments: rows locked with SKIP LOCKED on
MySQL/MariaDB (SQLite's transaction holds the write lock), then pushed to a lease in one
UPDATE, so that replicas take disjoint batches and a worker that dies leaves its rows due again
when the lease runs out.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    bindparam,
    delete,
    false,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from payment_gateway.domain.deliveries import DeliveryStatus, DisabledReason, WebhookEndpoint
from payment_gateway.domain.events import Event, EventType
from payment_gateway.service.ids import new_id
from payment_gateway.service.ports import (
    DeliveryAttempt,
    DeliveryOutcome,
    DeliveryRecord,
    DueDelivery,
    ListPosition,
)
from payment_gateway.storage.bulk_writes import BulkWriter
from payment_gateway.storage.repositories import beyond, skip_locked, without_all_null
from payment_gateway.storage.tables import (
    events,
    webhook_attempts,
    webhook_deliveries,
    webhook_endpoints,
)

_insert_event = insert(events)
_NULLABLE_ATTEMPT_COLUMNS = tuple(column.name for column in webhook_attempts.c if column.nullable)
_EVENTS_BY_MERCHANT = "ix_events_merchant_id_created_at_id"
_EVENTS_BY_TYPE = "ix_events_merchant_id_type_created_at_id"

_event_columns = select(
    events.c.id,
    events.c.merchant_id,
    events.c.type,
    events.c.object_id,
    events.c.created_at,
    events.c.body,
)

_endpoint_columns = select(
    webhook_endpoints.c.id,
    webhook_endpoints.c.merchant_id,
    webhook_endpoints.c.url,
    webhook_endpoints.c.description,
    webhook_endpoints.c.enabled_events,
    webhook_endpoints.c.disabled,
    webhook_endpoints.c.disabled_reason,
    webhook_endpoints.c.created_at,
    webhook_endpoints.c.updated_at,
)

_signing_columns = (
    webhook_endpoints.c.secret_encrypted,
    webhook_endpoints.c.previous_secret_encrypted,
    webhook_endpoints.c.previous_secret_expires_at,
)


def _to_event(row: Any) -> Event:
    return Event(
        row.id, row.merchant_id, EventType(row.type), row.object_id, row.created_at, row.body
    )


def _to_endpoint(row: Any) -> WebhookEndpoint:
    return WebhookEndpoint(
        id=row.id,
        merchant_id=row.merchant_id,
        url=row.url,
        enabled_events=tuple(json.loads(row.enabled_events)),
        created_at=row.created_at,
        updated_at=row.updated_at,
        description=row.description,
        disabled=bool(row.disabled),
        disabled_reason=row.disabled_reason,
    )


def _signing_secrets(row: Any, now: datetime) -> tuple[bytes, ...]:
    previous = row.previous_secret_encrypted
    if previous is not None and row.previous_secret_expires_at > now:
        return (row.secret_encrypted, previous)
    return (row.secret_encrypted,)


class SqlEventRepository:
    """The outbox's write, inside the transaction of the change (a unit of work's `events`)."""

    def __init__(self, bulk: BulkWriter) -> None:
        self._bulk = bulk  # on the driver itself where it can, with the change's other writes

    async def add_many(self, new_events: Sequence[Event]) -> None:
        rows = [
            {
                "id": event.id,
                "merchant_id": event.merchant_id,
                "type": event.type.value,
                "object_id": event.object_id,
                "created_at": event.created_at,
                "body": event.body,
                "fanout_due_at": event.created_at,
            }
            for event in new_events
        ]
        await self._bulk.execute_many(_insert_event, rows)


class SqlWebhookRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    # -- endpoints

    async def add_endpoint(self, endpoint: WebhookEndpoint, secret_encrypted: bytes) -> None:
        await self._connection.execute(
            insert(webhook_endpoints),
            {
                "id": endpoint.id,
                "merchant_id": endpoint.merchant_id,
                "url": endpoint.url,
                "description": endpoint.description,
                "enabled_events": json.dumps(list(endpoint.enabled_events)),
                "secret_encrypted": secret_encrypted,
                "disabled": endpoint.disabled,
                "created_at": endpoint.created_at,
                "updated_at": endpoint.updated_at,
            },
        )

    async def get_endpoint(self, endpoint_id: str, merchant_id: str) -> WebhookEndpoint | None:
        statement = _endpoint_columns.where(
            webhook_endpoints.c.id == endpoint_id, webhook_endpoints.c.merchant_id == merchant_id
        )
        row = (await self._connection.execute(statement)).first()
        return None if row is None else _to_endpoint(row)

    async def list_endpoints(self, merchant_id: str) -> list[WebhookEndpoint]:
        statement = _endpoint_columns.where(
            webhook_endpoints.c.merchant_id == merchant_id
        ).order_by(webhook_endpoints.c.created_at.desc(), webhook_endpoints.c.id.desc())
        return [_to_endpoint(row) for row in await self._connection.execute(statement)]

    async def update_endpoint(self, endpoint: WebhookEndpoint) -> None:
        values: dict[str, Any] = {
            "url": endpoint.url,
            "description": endpoint.description,
            "enabled_events": json.dumps(list(endpoint.enabled_events)),
            "disabled": endpoint.disabled,
            "disabled_reason": endpoint.disabled_reason,
            "updated_at": endpoint.updated_at,
        }
        if not endpoint.disabled:
            values["failing_since"] = None  # enabled again: its failures start anew
        await self._connection.execute(
            update(webhook_endpoints).where(webhook_endpoints.c.id == endpoint.id).values(**values)
        )

    async def delete_endpoint(self, endpoint_id: str, merchant_id: str) -> bool:
        owned = (
            select(webhook_endpoints.c.id)
            .where(
                webhook_endpoints.c.id == endpoint_id,
                webhook_endpoints.c.merchant_id == merchant_id,
            )
            .with_for_update()
        )
        if (await self._connection.execute(owned)).first() is None:
            return False
        deliveries = select(webhook_deliveries.c.id).where(
            webhook_deliveries.c.endpoint_id == endpoint_id
        )
        delivery_ids = list((await self._connection.scalars(deliveries)).all())
        for chunk in _chunks(delivery_ids):
            await self._connection.execute(
                delete(webhook_attempts).where(webhook_attempts.c.delivery_id.in_(chunk))
            )
        await self._connection.execute(
            delete(webhook_deliveries).where(webhook_deliveries.c.endpoint_id == endpoint_id)
        )
        await self._connection.execute(
            delete(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id)
        )
        return True

    async def replace_secret(
        self, endpoint_id: str, secret_encrypted: bytes, previous_expires_at: datetime
    ) -> None:
        endpoints = webhook_endpoints
        # In this order: MySQL assigns left to right, each assignment seeing the ones before.
        await self._connection.execute(
            update(endpoints)
            .where(endpoints.c.id == endpoint_id)
            .ordered_values(
                (endpoints.c.previous_secret_encrypted, endpoints.c.secret_encrypted),
                (endpoints.c.previous_secret_expires_at, previous_expires_at),
                (endpoints.c.secret_encrypted, secret_encrypted),
            )
        )

    async def park_deliveries(self, endpoint_id: str) -> None:
        await self._connection.execute(_park(webhook_deliveries.c.endpoint_id == endpoint_id))

    async def resume_deliveries(self, endpoint_id: str, now: datetime) -> None:
        await self._connection.execute(
            update(webhook_deliveries)
            .where(
                webhook_deliveries.c.endpoint_id == endpoint_id,
                webhook_deliveries.c.status == DeliveryStatus.PENDING.value,
            )
            .values(next_attempt_at=now)
        )

    # -- the outbox, fanned out into deliveries

    async def fan_out(self, now: datetime, limit: int, lease_until: datetime) -> list[DueDelivery]:
        fresh = skip_locked(
            _event_columns.where(events.c.fanout_due_at <= now)
            .order_by(events.c.fanout_due_at)
            .limit(limit),
            self._connection,
        )
        new_events = [_to_event(row) for row in await self._connection.execute(fresh)]
        if not new_events:
            return []
        endpoints = await self._enabled_endpoints({event.merchant_id for event in new_events}, now)
        due: list[DueDelivery] = []
        rows: list[dict[str, Any]] = []
        for event in new_events:
            for endpoint, secrets in endpoints.get(event.merchant_id, []):
                if not endpoint.subscribes_to(event.type):
                    continue
                delivery_id = new_id()
                rows.append(
                    {
                        "id": delivery_id,
                        "event_id": event.id,
                        "endpoint_id": endpoint.id,
                        "merchant_id": event.merchant_id,
                        "status": DeliveryStatus.PENDING.value,
                        "attempts": 0,
                        "created_at": now,
                        "updated_at": now,
                        "next_attempt_at": lease_until,  # claimed by this worker already
                    }
                )
                due.append(DueDelivery(delivery_id, event, endpoint.id, endpoint.url, secrets, 0))
        if rows:
            await self._connection.execute(insert(webhook_deliveries), rows)
        for chunk in _chunks([event.id for event in new_events]):
            await self._connection.execute(
                update(events).where(events.c.id.in_(chunk)).values(fanout_due_at=None)
            )
        return due

    async def _enabled_endpoints(
        self, merchant_ids: set[str], now: datetime
    ) -> dict[str, list[tuple[WebhookEndpoint, tuple[bytes, ...]]]]:
        statement = _endpoint_columns.add_columns(*_signing_columns).where(
            webhook_endpoints.c.merchant_id.in_(sorted(merchant_ids)),
            webhook_endpoints.c.disabled == false(),
        )
        found: dict[str, list[tuple[WebhookEndpoint, tuple[bytes, ...]]]] = {}
        for row in await self._connection.execute(statement):
            found.setdefault(row.merchant_id, []).append(
                (_to_endpoint(row), _signing_secrets(row, now))
            )
        return found

    async def claim_due(
        self, now: datetime, limit: int, lease_until: datetime
    ) -> list[DueDelivery]:
        deliveries = webhook_deliveries
        claimable = skip_locked(
            select(deliveries.c.id)
            .where(deliveries.c.next_attempt_at <= now)
            .order_by(deliveries.c.next_attempt_at)
            .limit(limit),
            self._connection,
        )
        ids = list((await self._connection.scalars(claimable)).all())
        if not ids:
            return []
        await self._connection.execute(
            update(deliveries).where(deliveries.c.id.in_(ids)).values(next_attempt_at=lease_until)
        )
        statement = (
            select(
                deliveries.c.id.label("delivery_id"),
                deliveries.c.attempts,
                deliveries.c.endpoint_id,
                webhook_endpoints.c.url,
                webhook_endpoints.c.disabled.label("endpoint_disabled"),
                *_signing_columns,
                *_event_columns.selected_columns,
            )
            .join(events, events.c.id == deliveries.c.event_id)
            .join(webhook_endpoints, webhook_endpoints.c.id == deliveries.c.endpoint_id)
            .where(deliveries.c.id.in_(ids))
        )
        due: list[DueDelivery] = []
        parked: list[str] = []
        for row in await self._connection.execute(statement):
            if row.endpoint_disabled:
                parked.append(row.delivery_id)
                continue
            due.append(
                DueDelivery(
                    row.delivery_id,
                    _to_event(row),
                    row.endpoint_id,
                    row.url,
                    _signing_secrets(row, now),
                    row.attempts,
                )
            )
        if parked:
            await self._connection.execute(_park(deliveries.c.id.in_(parked)))
        return due

    async def record_outcomes(
        self, outcomes: Sequence[DeliveryOutcome], failing_since_cutoff: datetime
    ) -> None:
        if not outcomes:
            return
        # A batch of deliveries has no error in any row: left out, as bulk execution wants.
        _, attempts = without_all_null(
            [
                {
                    "id": new_id(),
                    "delivery_id": outcome.delivery.id,
                    "attempted_at": outcome.attempted_at,
                    "status_code": outcome.result.status_code,
                    "duration_ms": outcome.result.duration_ms,
                    "error": _cut(outcome.result.error, 255),
                    "response_excerpt": _cut(outcome.result.response_excerpt, 1024),
                }
                for outcome in outcomes
            ],
            _NULLABLE_ATTEMPT_COLUMNS,
        )
        await self._connection.execute(insert(webhook_attempts), attempts)
        latest = max(outcome.attempted_at for outcome in outcomes)
        for status in DeliveryStatus:
            await self._set_status(status, [o for o in outcomes if o.status is status], latest)
        await self._track_endpoints(outcomes, failing_since_cutoff)

    async def _set_status(
        self, status: DeliveryStatus, outcomes: list[DeliveryOutcome], updated_at: datetime
    ) -> None:
        """One UPDATE of the batch's delivered (or failed) rows, all stamped with the batch's
        latest attempt, rather than one per row (bulk-executed in one round trip, but still a
        statement per row for the server and a row of parameters to bind here). Each attempt's
        own time is in its attempts row. Pending rows, each with its own next attempt, are
        the retries' rarer path: one statement per row."""
        if not outcomes:
            return
        deliveries = webhook_deliveries
        counted = {"attempts": deliveries.c.attempts + 1, "updated_at": updated_at}
        if status is not DeliveryStatus.PENDING:
            await self._connection.execute(
                update(deliveries)
                .where(deliveries.c.id.in_([outcome.delivery.id for outcome in outcomes]))
                .values(status=status.value, next_attempt_at=None, **counted)
            )
            return
        await self._connection.execute(
            update(deliveries)
            .where(deliveries.c.id == bindparam("delivery_id"))
            .values(status=status.value, next_attempt_at=bindparam("retry_at"), **counted),
            [{"delivery_id": o.delivery.id, "retry_at": o.next_attempt_at} for o in outcomes],
        )

    async def _track_endpoints(
        self, outcomes: Sequence[DeliveryOutcome], failing_since_cutoff: datetime
    ) -> None:
        """Keep each endpoint's run of failures; disable those gone (410) or failing since
        before the cutoff, and park their pending deliveries."""
        at = max(outcome.attempted_at for outcome in outcomes)
        working = {o.delivery.endpoint_id for o in outcomes if o.result.delivered}
        failing = {o.delivery.endpoint_id for o in outcomes if not o.result.delivered} - working
        endpoints = webhook_endpoints
        if working:
            await self._connection.execute(
                update(endpoints)
                .where(endpoints.c.id.in_(sorted(working)), endpoints.c.failing_since.is_not(None))
                .values(failing_since=None)
            )
        if not failing:
            return
        await self._connection.execute(
            update(endpoints)
            .where(endpoints.c.id.in_(sorted(failing)), endpoints.c.failing_since.is_(None))
            .values(failing_since=at)
        )
        gone = {o.delivery.endpoint_id for o in outcomes if o.gone} & failing
        given_up = select(endpoints.c.id).where(
            endpoints.c.id.in_(sorted(failing - gone)),
            endpoints.c.failing_since <= failing_since_cutoff,
            endpoints.c.disabled == false(),
        )
        failing_too_long = set((await self._connection.scalars(given_up)).all())
        for reason, ids in (
            (DisabledReason.GONE, gone),
            (DisabledReason.FAILING, failing_too_long),
        ):
            for endpoint_id in sorted(ids):
                await self._connection.execute(
                    update(endpoints)
                    .where(endpoints.c.id == endpoint_id, endpoints.c.disabled == false())
                    .values(disabled=True, disabled_reason=reason.value, updated_at=at)
                )
                await self.park_deliveries(endpoint_id)

    async def redeliver(self, event: Event, now: datetime) -> int:
        endpoints = await self._enabled_endpoints({event.merchant_id}, now)
        subscribed = [
            endpoint
            for endpoint, _secrets in endpoints.get(event.merchant_id, [])
            if endpoint.subscribes_to(event.type)
        ]
        if not subscribed:
            return 0
        existing = set(
            (
                await self._connection.scalars(
                    select(webhook_deliveries.c.endpoint_id).where(
                        webhook_deliveries.c.event_id == event.id
                    )
                )
            ).all()
        )
        again = [endpoint.id for endpoint in subscribed if endpoint.id in existing]
        if again:
            await self._connection.execute(
                update(webhook_deliveries)
                .where(
                    webhook_deliveries.c.event_id == event.id,
                    webhook_deliveries.c.endpoint_id.in_(again),
                )
                .values(status=DeliveryStatus.PENDING.value, next_attempt_at=now, updated_at=now)
            )
        new = [endpoint.id for endpoint in subscribed if endpoint.id not in existing]
        if new:
            await self._connection.execute(
                insert(webhook_deliveries),
                [
                    {
                        "id": new_id(),
                        "event_id": event.id,
                        "endpoint_id": endpoint_id,
                        "merchant_id": event.merchant_id,
                        "status": DeliveryStatus.PENDING.value,
                        "attempts": 0,
                        "created_at": now,
                        "updated_at": now,
                        "next_attempt_at": now,
                    }
                    for endpoint_id in new
                ],
            )
        return len(subscribed)

    # -- what the merchant reads

    async def list_deliveries(
        self, endpoint_id: str, limit: int, older_than: ListPosition | None
    ) -> list[DeliveryRecord]:
        deliveries = webhook_deliveries
        conditions: list[ColumnElement[bool]] = [deliveries.c.endpoint_id == endpoint_id]
        if older_than is not None:
            conditions.append(beyond(deliveries, older_than, older=True))
        statement = (
            _delivery_columns()
            .where(*conditions)
            .order_by(deliveries.c.created_at.desc(), deliveries.c.id.desc())
            .limit(limit)
        )
        return await self._with_attempts(list(await self._connection.execute(statement)))

    async def get_delivery(self, delivery_id: str, endpoint_id: str) -> DeliveryRecord | None:
        statement = _delivery_columns().where(
            webhook_deliveries.c.id == delivery_id,
            webhook_deliveries.c.endpoint_id == endpoint_id,
        )
        found = await self._with_attempts(list(await self._connection.execute(statement)))
        return found[0] if found else None

    async def _with_attempts(self, rows: list[Any]) -> list[DeliveryRecord]:
        attempts: dict[str, list[DeliveryAttempt]] = {row.id: [] for row in rows}
        if rows:
            statement = (
                select(webhook_attempts)
                .where(webhook_attempts.c.delivery_id.in_(list(attempts)))
                .order_by(webhook_attempts.c.attempted_at, webhook_attempts.c.id)
            )
            for attempt in await self._connection.execute(statement):
                attempts[attempt.delivery_id].append(
                    DeliveryAttempt(
                        attempt.attempted_at,
                        attempt.status_code,
                        attempt.duration_ms,
                        attempt.error,
                        attempt.response_excerpt,
                    )
                )
        return [
            DeliveryRecord(
                id=row.id,
                event_id=row.event_id,
                event_type=row.type,
                endpoint_id=row.endpoint_id,
                status=DeliveryStatus(row.status),
                created_at=row.created_at,
                updated_at=row.updated_at,
                next_attempt_at=row.next_attempt_at,
                attempts=attempts[row.id],
            )
            for row in rows
        ]

    async def oldest_undelivered_at(self) -> datetime | None:
        # Both ranges are read through their indexes: only rows still waiting are in them.
        not_fanned_out = select(func.min(events.c.created_at)).where(
            events.c.fanout_due_at.is_not(None)
        )
        pending = (
            select(func.min(events.c.created_at))
            .join(webhook_deliveries, webhook_deliveries.c.event_id == events.c.id)
            .where(webhook_deliveries.c.next_attempt_at.is_not(None))
        )
        found = [
            value
            for value in (
                await self._connection.scalar(not_fanned_out),
                await self._connection.scalar(pending),
            )
            if value is not None
        ]
        return min(found) if found else None

    async def get_event(self, event_id: str, merchant_id: str) -> Event | None:
        statement = _event_columns.where(
            events.c.id == event_id, events.c.merchant_id == merchant_id
        )
        row = (await self._connection.execute(statement)).first()
        return None if row is None else _to_event(row)

    async def list_events(
        self,
        merchant_id: str,
        event_type: str | None,
        limit: int,
        *,
        older_than: ListPosition | None = None,
        newer_than: ListPosition | None = None,
    ) -> list[Event]:
        conditions: list[ColumnElement[bool]] = [events.c.merchant_id == merchant_id]
        if event_type is not None:
            conditions.append(events.c.type == event_type)
        created, row_id = events.c.created_at, events.c.id
        if older_than is not None:
            conditions.append(beyond(events, older_than, older=True))
        if newer_than is not None:
            conditions.append(beyond(events, newer_than, older=False))
        order = (
            (created.asc(), row_id.asc())
            if newer_than is not None
            else (created.desc(), row_id.desc())
        )
        # As for payments (repositories.listing_statement): MariaDB is told which index.
        index = _EVENTS_BY_TYPE if event_type is not None else _EVENTS_BY_MERCHANT
        statement = (
            _event_columns.where(*conditions)
            .order_by(*order)
            .limit(limit)
            .with_hint(events, f"FORCE INDEX ({index})", dialect_name="mysql")
        )
        return [_to_event(row) for row in await self._connection.execute(statement)]

    async def delete_events_before(self, created_before: datetime, limit: int) -> int:
        old = (
            select(events.c.id)
            .where(events.c.created_at < created_before)
            .order_by(events.c.created_at)
            .limit(limit)
        )
        event_ids = list((await self._connection.scalars(old)).all())
        if not event_ids:
            return 0
        deliveries = select(webhook_deliveries.c.id).where(
            webhook_deliveries.c.event_id.in_(event_ids)
        )
        delivery_ids = list((await self._connection.scalars(deliveries)).all())
        for chunk in _chunks(delivery_ids):
            await self._connection.execute(
                delete(webhook_attempts).where(webhook_attempts.c.delivery_id.in_(chunk))
            )
            await self._connection.execute(
                delete(webhook_deliveries).where(webhook_deliveries.c.id.in_(chunk))
            )
        await self._connection.execute(delete(events).where(events.c.id.in_(event_ids)))
        return len(event_ids)


def _delivery_columns() -> Select[Any]:
    deliveries = webhook_deliveries
    return select(
        deliveries.c.id,
        deliveries.c.event_id,
        deliveries.c.endpoint_id,
        deliveries.c.status,
        deliveries.c.created_at,
        deliveries.c.updated_at,
        deliveries.c.next_attempt_at,
        events.c.type,
    ).join(events, events.c.id == deliveries.c.event_id)


def _park(condition: ColumnElement[bool]) -> Any:
    return (
        update(webhook_deliveries)
        .where(condition, webhook_deliveries.c.status == DeliveryStatus.PENDING.value)
        .values(next_attempt_at=None)
    )


def _cut(text: str | None, length: int) -> str | None:
    return None if text is None else text[:length]


def _chunks(ids: list[str], size: int = 500) -> list[list[str]]:
    return [ids[start : start + size] for start in range(0, len(ids), size)]
