"""The payment entity and its status machine."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING

from payment_gateway.domain.card import CardSummary

if TYPE_CHECKING:
    from payment_gateway.domain.three_d_secure import ThreeDSecure


class PaymentStatus(StrEnum):
    INIT = "init"
    REQUIRES_ACTION = "requires_action"  # the shopper has a 3-D Secure challenge to answer
    PROCESSING = "processing"
    AUTHORIZED = "authorized"  # held at the bank (capture=false), to capture or cancel
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset(
    {PaymentStatus.SUCCEEDED, PaymentStatus.FAILED, PaymentStatus.CANCELED}
)
# Waiting for the deposit's outcome: the statuses a bank answer about the deposit may move.
OPEN_STATUSES = frozenset({PaymentStatus.INIT, PaymentStatus.PROCESSING})
# Not yet charged: what a bank answer about the deposit or the authentication may move.
UNSETTLED_STATUSES = OPEN_STATUSES | {PaymentStatus.REQUIRES_ACTION}

_ALLOWED: dict[PaymentStatus, frozenset[PaymentStatus]] = {
    PaymentStatus.INIT: frozenset(
        {
            PaymentStatus.REQUIRES_ACTION,
            PaymentStatus.PROCESSING,
            PaymentStatus.AUTHORIZED,
            PaymentStatus.SUCCEEDED,
            PaymentStatus.FAILED,
        }
    ),
    # Answered: authenticated, the deposit is on its way (init again); or failed, or expired.
    PaymentStatus.REQUIRES_ACTION: frozenset({PaymentStatus.INIT, PaymentStatus.FAILED}),
    PaymentStatus.PROCESSING: frozenset(
        {PaymentStatus.AUTHORIZED, PaymentStatus.SUCCEEDED, PaymentStatus.FAILED}
    ),
    # Only a capture (succeeded) or a void (canceled) moves an authorization on.
    PaymentStatus.AUTHORIZED: frozenset({PaymentStatus.SUCCEEDED, PaymentStatus.CANCELED}),
    PaymentStatus.SUCCEEDED: frozenset(),
    PaymentStatus.FAILED: frozenset(),
    PaymentStatus.CANCELED: frozenset(),
}


def can_transition(current: PaymentStatus, new: PaymentStatus) -> bool:
    """Whether ``current`` may move to ``new``; a terminal status never changes."""
    return new in _ALLOWED[current]


def statuses_that_may_become(new: PaymentStatus) -> frozenset[PaymentStatus]:
    """The statuses a row must have for a bank answer's outcome ``new`` to apply.

    Only a payment not yet charged: an authorization moves on by a capture or a void
    (domain/operations.py), never by another answer about the deposit.
    """
    return (
        frozenset(status for status, targets in _ALLOWED.items() if new in targets)
        & UNSETTLED_STATUSES
    )


class DeclineReason(StrEnum):
    BANK_UNAVAILABLE = "bank_unavailable"
    BANK_REJECTED = "bank_rejected"


@dataclass(frozen=True, slots=True)
class Resolution:
    """What the gateway learned about a payment from the bank."""

    status: PaymentStatus
    code: str | None = None
    decline_reason: str | None = None
    tracking_id: str | None = None
    three_d_secure: ThreeDSecure | None = None  # what an authentication answer changed


@dataclass(slots=True)
class Payment:
    id: str
    merchant_id: str
    status: PaymentStatus
    amount: int
    currency: str
    reference: str | None
    card: CardSummary
    created_at: datetime
    updated_at: datetime
    code: str | None = None
    decline_reason: str | None = None
    tracking_id: str | None = None
    capture: bool = True  # False: authorize only, capture later
    amount_captured: int = 0
    amount_refunded: int = 0  # by succeeded refunds
    amount_refund_pending: int = 0  # by refunds sent and not yet settled
    cancellation_reason: str | None = None
    three_d_secure: ThreeDSecure | None = None  # asked for with a return_url
    checkout_session_id: str | None = None  # made on the hosted page for this session

    @property
    def refunded(self) -> bool:
        return self.amount_captured > 0 and self.amount_refunded >= self.amount_captured

    @property
    def amount_refundable(self) -> int:
        """What refunds may still take: pending ones count, lest two race for the same."""
        return max(self.amount_captured - self.amount_refunded - self.amount_refund_pending, 0)

    def apply(self, resolution: Resolution, now: datetime) -> bool:
        """Move to the resolution's status if the machine allows it; report whether it did."""
        if resolution.status == self.status and not self.status.is_terminal:
            # processing -> processing: nothing to record but a tracking id may have arrived.
            self.tracking_id = resolution.tracking_id or self.tracking_id
            return False
        if self.status not in statuses_that_may_become(resolution.status):
            return False
        self.status = resolution.status
        if resolution.status is PaymentStatus.SUCCEEDED:
            self.amount_captured = self.amount
        self.code = resolution.code
        self.decline_reason = resolution.decline_reason
        self.tracking_id = resolution.tracking_id or self.tracking_id
        self.three_d_secure = resolution.three_d_secure or self.three_d_secure
        self.updated_at = now
        return True


@dataclass(frozen=True, slots=True)
class PaymentRequest:
    """A validated request to charge a card. The PAN and CVV never appear in its repr."""

    pan: str = field(repr=False)
    cvv: str | None = field(repr=False)  # None only for a deposit after 3-D Secure
    expiry_month: int
    expiry_year: int
    holder_name: str | None = field(repr=False)
    amount: int
    currency: str
    reference: str | None
    capture: bool = True
    three_d_secure_return_url: str | None = None  # ask for 3-D Secure, back to this URL
    checkout_session_id: str | None = None  # the hosted page's session it pays

    def fingerprint_material(self) -> bytes:
        """A canonical encoding of the content, for keyed hashing (never stored as is).

        The CVV is left out: a hash of three or four digits falls to a few thousand guesses,
        and PCI DSS 3.3.1.2 forbids keeping it in any form. A retry that differs only in the
        CVV is therefore the same request.
        """
        # JSON keeps field boundaries unambiguous whatever characters the fields contain.
        fields = [
            self.pan,
            self.expiry_month,
            self.expiry_year,
            self.holder_name,
            self.amount,
            self.currency,
            self.reference,
            *([] if self.capture else ["authorize-only"]),
            *([] if self.three_d_secure_return_url is None else [self.three_d_secure_return_url]),
            # Appended only when set, so the fingerprints of API payments stay as they were.
            *([] if self.checkout_session_id is None else [self.checkout_session_id]),
        ]
        return json.dumps(fields, ensure_ascii=False).encode()


@dataclass(frozen=True, slots=True)
class RetrySchedule:
    """When the reconciler may look at an open payment again after claiming it.

    Exponential backoff per payment, but never sooner than the claim's lease, which must
    outlast one bank inquiry so that no other replica takes the payment meanwhile.
    """

    lease_seconds: float
    base_seconds: float
    max_seconds: float

    def next_attempt_at(self, now: datetime, attempts: int) -> datetime:
        backoff = min(self.base_seconds * 2 ** min(attempts, 20), self.max_seconds)
        return now + timedelta(seconds=max(backoff, self.lease_seconds))
