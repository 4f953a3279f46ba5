"""The event outbox: the event of each state change, written in the change's own transaction.

The recorder (service/recording.py) calls `events_for` before it commits, so that a change and
its event are committed together or not at all (docs/design.md, Events and webhooks).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from payment_gateway.domain.events import (
    CheckoutSessionChanged,
    Event,
    PaymentStatusChanged,
    StateChange,
    event_type,
)
from payment_gateway.service.documents import timestamp
from payment_gateway.service.ids import new_id

EVENT_ID_PREFIX = "evt_"


def changed_object_id(change: StateChange) -> str:
    if isinstance(change, PaymentStatusChanged):
        return change.payment_id
    if isinstance(change, CheckoutSessionChanged):
        return change.session_id
    return change.refund_id


def events_for(
    changes: Sequence[StateChange], documents: Mapping[str, dict[str, Any]]
) -> list[Event]:
    """The events of ``changes``; ``documents`` holds each changed object as the API shows it
    after the change, by id."""
    events: list[Event] = []
    for change in changes:
        kind = event_type(change)
        if kind is None:
            continue
        object_id = changed_object_id(change)
        event_id = EVENT_ID_PREFIX + new_id()
        body = orjson.dumps(
            {
                "id": event_id,
                "object": "event",
                "type": kind.value,
                "created_at": timestamp(change.occurred_at),
                "data": {"object": documents[object_id]},
            }
        )
        events.append(
            Event(event_id, change.merchant_id, kind, object_id, change.occurred_at, body)
        )
    return events


def needs_event(change: StateChange) -> bool:
    return event_type(change) is not None
