"""Checkout sessions: a payment the shopper makes on the gateway's hosted page.

The merchant creates a session (amount, currency, where to send the shopper back); the
shopper pays on ``/checkout/{id}``, which the gateway serves, so the merchant never sees card
data (docs/design.md, Hosted payment page). A session is ``open`` until a payment for it
succeeds (``complete``) or it runs out of time, declines or is expired by the merchant
(``expired``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from urllib.parse import quote

from payment_gateway.domain.payment import PaymentRequest, PaymentStatus
from payment_gateway.domain.urls import with_query

SESSION_ID_PREFIX = "cs_"
MIN_EXPIRES_IN = timedelta(minutes=30)
MAX_EXPIRES_IN = timedelta(hours=24)
DEFAULT_EXPIRES_IN = timedelta(hours=1)
# Card-testing defence: a session whose payments were declined this often expires.
MAX_DECLINES = 5


class CheckoutStatus(StrEnum):
    OPEN = "open"
    COMPLETE = "complete"
    EXPIRED = "expired"


class CheckoutPaymentStatus(StrEnum):
    """As Stripe's: ``paid`` once the money is taken; an authorization (``capture`` false)
    completes the session ``unpaid`` until it is captured through the payments API."""

    UNPAID = "unpaid"
    PAID = "paid"


# A payment of a session that may still succeed: the session must not expire under it.
PENDING_PAYMENT_STATUSES = frozenset(
    status
    for status in PaymentStatus
    if not status.is_terminal and status is not PaymentStatus.AUTHORIZED
)
# Payments that complete their session.
COMPLETING_PAYMENT_STATUSES = frozenset({PaymentStatus.SUCCEEDED, PaymentStatus.AUTHORIZED})


@dataclass(slots=True)
class CheckoutSession:
    id: str
    merchant_id: str
    status: CheckoutStatus
    amount: int
    currency: str
    reference: str | None
    success_url: str
    cancel_url: str
    capture: bool
    url: str  # the hosted page, as browsers reach it
    created_at: datetime
    updated_at: datetime
    expires_at: datetime
    payment_status: CheckoutPaymentStatus = CheckoutPaymentStatus.UNPAID
    payment_id: str | None = None  # the latest payment made for it
    declines: int = 0  # payments of it that failed
    merchant_name: str = ""  # read with the session, for the page
    payment_pending: bool = False  # a payment of it may still succeed

    def accepts_payment(self, now: datetime) -> bool:
        """Whether the page may take a card now: open and not yet past its expiry."""
        return self.status is CheckoutStatus.OPEN and now < self.expires_at

    def success_redirect(self) -> str:
        return with_query(self.success_url, session_id=self.id)


@dataclass(frozen=True, slots=True)
class CheckoutSessionDraft:
    """A validated request to create a session."""

    amount: int
    currency: str
    reference: str | None
    success_url: str
    cancel_url: str
    capture: bool = True
    expires_in: timedelta = DEFAULT_EXPIRES_IN


@dataclass(frozen=True, slots=True)
class CardEntry:
    """The card the shopper typed into the hosted page, validated. Never in a repr."""

    pan: str = field(repr=False)
    cvv: str = field(repr=False)
    expiry_month: int
    expiry_year: int
    holder_name: str | None = field(repr=False)

    def payment_request(self, session: CheckoutSession, return_url: str) -> PaymentRequest:
        """The payment of ``session`` with this card, 3-D Secure asked for: after a challenge
        the shopper comes back to ``return_url`` (the page's return route)."""
        return PaymentRequest(
            pan=self.pan,
            cvv=self.cvv,
            expiry_month=self.expiry_month,
            expiry_year=self.expiry_year,
            holder_name=self.holder_name,
            amount=session.amount,
            currency=session.currency,
            reference=session.reference,
            capture=session.capture,
            three_d_secure_return_url=return_url,
            checkout_session_id=session.id,
        )


CHECKOUT_PATH = "/checkout/"


def page_url(public_url: str, session_id: str) -> str:
    """The hosted page of a session: ``{PUBLIC_URL}/checkout/{id}``."""
    return f"{public_url}{CHECKOUT_PATH}{quote(session_id, safe='')}"


def challenge_return_url(public_url: str, session_id: str) -> str:
    """Where a shopper back from a 3-D Secure challenge lands: the page's return route."""
    return f"{page_url(public_url, session_id)}/return"


def attempt_key(session_id: str, attempt: int) -> str:
    """The idempotency key of a session's ``attempt``-th payment (counted from 0).

    The page's form carries the attempt it was rendered for: a second post of the same form
    (a double click, a reload) replays the first one's payment instead of making another.
    """
    return f"checkout:{session_id}:{attempt}"
