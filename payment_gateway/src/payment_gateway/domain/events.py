"""Domain events: what happened to a payment, as every write path records it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from payment_gateway.domain.checkout import CheckoutStatus
from payment_gateway.domain.operations import OperationStatus
from payment_gateway.domain.payment import PaymentStatus


@dataclass(frozen=True, slots=True)
class PaymentStatusChanged:
    """A payment reached ``status`` (including its first, ``init``).

    Made by the recorder inside the transaction that makes the change, so that an event exists
    exactly when the change does (docs/design.md, Statuses).
    """

    payment_id: str
    merchant_id: str
    status: PaymentStatus
    occurred_at: datetime
    code: str | None = None
    decline_reason: str | None = None
    amount: int | None = None  # on creation
    currency: str | None = None  # on creation
    by: str = "request"  # or "reconciler"
    request_id: str | None = None  # the API request that caused it, if one did


@dataclass(frozen=True, slots=True)
class RefundStatusChanged:
    """A refund reached ``status`` (succeeded or failed)."""

    refund_id: str
    payment_id: str
    merchant_id: str
    status: OperationStatus
    amount: int
    occurred_at: datetime
    failure_reason: str | None = None
    by: str = "request"
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class CheckoutSessionChanged:
    """A checkout session became ``complete`` or ``expired``."""

    session_id: str
    merchant_id: str
    status: CheckoutStatus
    occurred_at: datetime
    payment_id: str | None = None
    by: str = "request"  # or "reconciler" (a payment it settled), "expiry"
    request_id: str | None = None


StateChange = PaymentStatusChanged | RefundStatusChanged | CheckoutSessionChanged


class EventType(StrEnum):
    """What merchants subscribe to (docs/design.md, Events and webhooks)."""

    PAYMENT_REQUIRES_ACTION = "payment.requires_action"
    PAYMENT_PROCESSING = "payment.processing"
    PAYMENT_AUTHORIZED = "payment.authorized"
    PAYMENT_SUCCEEDED = "payment.succeeded"
    PAYMENT_FAILED = "payment.failed"
    PAYMENT_CANCELED = "payment.canceled"
    REFUND_SUCCEEDED = "refund.succeeded"
    REFUND_FAILED = "refund.failed"
    CHECKOUT_SESSION_COMPLETED = "checkout.session.completed"
    CHECKOUT_SESSION_EXPIRED = "checkout.session.expired"


_CHECKOUT_EVENTS = {
    CheckoutStatus.COMPLETE: EventType.CHECKOUT_SESSION_COMPLETED,
    CheckoutStatus.EXPIRED: EventType.CHECKOUT_SESSION_EXPIRED,
}


def event_type(change: StateChange) -> EventType | None:
    """The event a state change is told as; None for a creation (``init``, a pending refund),
    which the merchant's own request already answered, and for a payment's return to ``init``
    after its 3-D Secure challenge (the deposit's outcome follows at once)."""
    if isinstance(change, CheckoutSessionChanged):
        return _CHECKOUT_EVENTS.get(change.status)
    if isinstance(change, RefundStatusChanged):
        if change.status is OperationStatus.PENDING:
            return None
        return EventType(f"refund.{change.status.value}")
    if change.status is PaymentStatus.INIT:
        return None
    return EventType(f"payment.{change.status.value}")


@dataclass(frozen=True, slots=True)
class Event:
    """An event as stored in the outbox and delivered: ``body`` is the exact JSON sent.

    The body is serialised once, when the event is written, so every delivery and redelivery
    sends (and signs) the same bytes.
    """

    id: str  # evt_…
    merchant_id: str
    type: EventType
    object_id: str
    created_at: datetime
    body: bytes
