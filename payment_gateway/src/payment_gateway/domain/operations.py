"""What happens to a payment after the charge: captures, voids and refunds.

Each is an operation of its own, with its own id — the reference the bank de-duplicates on —
written `pending` before the bank is called, exactly as a payment is, and settled once the
bank's answer is known (by the request, or later by the reconciler asking the bank).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class OperationKind(StrEnum):
    CAPTURE = "capture"
    VOID = "void"  # what the API calls cancel
    REFUND = "refund"


class OperationStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class RefundReason(StrEnum):
    DUPLICATE = "duplicate"
    FRAUDULENT = "fraudulent"
    REQUESTED_BY_CUSTOMER = "requested_by_customer"


class CancellationReason(StrEnum):
    REQUESTED_BY_MERCHANT = "requested_by_merchant"
    EXPIRED = "expired"  # not captured within AUTHORIZATION_TTL_SECONDS


@dataclass(frozen=True, slots=True)
class OperationResolution:
    """What the bank's answer means for an operation."""

    status: OperationStatus
    failure_reason: str | None = None
    tracking_id: str | None = None


@dataclass(slots=True)
class Operation:
    id: str
    payment_id: str
    merchant_id: str
    kind: OperationKind
    amount: int
    currency: str
    status: OperationStatus
    created_at: datetime
    updated_at: datetime
    reason: str | None = None  # a refund's RefundReason, a void's CancellationReason
    reference: str | None = None  # the merchant's own reference (refunds)
    failure_reason: str | None = None
    tracking_id: str | None = None
