"""Webhook endpoints and the delivery of events to them (docs/design.md, Events and webhooks).

Delivery is at least once: an event is retried on a schedule until an endpoint answers 2xx,
and a worker that dies mid-send leaves the attempt to be made again. Order is not guaranteed:
receivers de-duplicate on the event id (`webhook-id`) and order by `created_at`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from payment_gateway.domain.events import EventType

ALL_EVENTS = "*"
GONE = 410  # the receiver says the endpoint is gone for good: stop sending at once


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # to be sent (again), at next_attempt_at
    DELIVERED = "delivered"  # an attempt got a 2xx
    FAILED = "failed"  # every attempt of the schedule failed, or the endpoint is gone


class DisabledReason(StrEnum):
    REQUESTED = "requested_by_merchant"
    GONE = "endpoint_gone"  # answered 410
    FAILING = "failing"  # failed every attempt for DeliverySchedule.disable_after


@dataclass(slots=True)
class WebhookEndpoint:
    id: str  # we_…
    merchant_id: str
    url: str
    enabled_events: tuple[str, ...]  # event types, or ("*",) for every one
    created_at: datetime
    updated_at: datetime
    description: str | None = None
    disabled: bool = False
    disabled_reason: str | None = None

    def subscribes_to(self, event_type: EventType | str) -> bool:
        return ALL_EVENTS in self.enabled_events or str(event_type) in self.enabled_events


def unknown_event_types(enabled_events: tuple[str, ...]) -> list[str]:
    """The entries that are neither an event type nor "*"."""
    known = {kind.value for kind in EventType} | {ALL_EVENTS}
    return [name for name in enabled_events if name not in known]


@dataclass(frozen=True, slots=True)
class DeliverySchedule:
    """When a failed delivery is tried again, and when an endpoint is given up on.

    The retry delays follow Stripe's and Svix's: about 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and
    10 h, each moved by up to ``jitter`` either way so that the retries of many deliveries that
    failed together (a receiver that was down) do not all come back at the same instant.
    """

    retry_delays_seconds: tuple[float, ...] = (5, 300, 1800, 7200, 18000, 36000, 36000)
    jitter: float = 0.1
    disable_after: timedelta = timedelta(days=5)
    max_retry_after_seconds: float = 36_000  # a receiver cannot park a delivery for ever

    def next_attempt_at(
        self,
        now: datetime,
        attempts_made: int,
        retry_after_seconds: float | None = None,
        rng: random.Random | None = None,
    ) -> datetime | None:
        """When to try again after ``attempts_made`` failed attempts; None: give up.

        A receiver's ``Retry-After`` is honoured when it asks for more time than the schedule
        gives, up to ``max_retry_after_seconds``.
        """
        if attempts_made > len(self.retry_delays_seconds):
            return None
        delay = self.retry_delays_seconds[attempts_made - 1]
        delay *= 1 + (rng or random).uniform(-self.jitter, self.jitter)
        if retry_after_seconds is not None:
            delay = max(delay, min(retry_after_seconds, self.max_retry_after_seconds))
        return now + timedelta(seconds=delay)

    @property
    def max_attempts(self) -> int:
        return len(self.retry_delays_seconds) + 1
