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
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from payment_gateway.domain.payment import PaymentRequest, PaymentStatus

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

    def payment_request(self, session: CheckoutSession) -> PaymentRequest:
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
            checkout_session_id=session.id,
        )


def attempt_key(session_id: str, attempt: int) -> str:
    """The idempotency key of a session's ``attempt``-th payment (counted from 0).

    The page's form carries the attempt it was rendered for: a second post of the same form
    (a double click, a reload) replays the first one's payment instead of making another.
    """
    return f"checkout:{session_id}:{attempt}"


def with_query(url: str, **params: str) -> str:
    """``url`` with ``params`` added to its query (kept in order; an existing one replaced)."""
    parts = urlsplit(url)
    query = [(name, value) for name, value in parse_qsl(parts.query, keep_blank_values=True)]
    query = [(name, value) for name, value in query if name not in params]
    query.extend(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


def redirect_url_problem(url: str, *, allow_http: bool) -> str | None:
    """Why ``url`` cannot be a success or cancel URL (None: it can).

    Absolute, with a host, no user info; ``https``, or ``http`` too outside production.
    """
    if not url.isascii() or not url.isprintable() or " " in url:
        return "must be an absolute URL without spaces or control characters"
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return "must be an absolute URL"
    schemes = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in ("https", "http") or not host:
        return "must be an absolute https URL"
    if parts.scheme not in schemes:
        return "must be an https URL in production"
    if parts.username is not None or parts.password is not None:
        return "must not contain user info"
    return None


def web_origin(url: str) -> str:
    """``https://shop.example:8443/x?y`` → ``https://shop.example:8443`` (for CSP)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
