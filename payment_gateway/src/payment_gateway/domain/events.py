"""Domain events: what happened to a payment, as every write path records it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

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


StateChange = PaymentStatusChanged | RefundStatusChanged
