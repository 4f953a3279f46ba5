"""How a committed state change is announced: one log line and one metric."""

from __future__ import annotations

import structlog

from payment_gateway.domain.events import (
    CheckoutSessionChanged,
    PaymentStatusChanged,
    RefundStatusChanged,
    StateChange,
)
from payment_gateway.metrics import CHECKOUT_SESSIONS, PAYMENTS, REFUNDS

log = structlog.get_logger(__name__)


def announce(change: StateChange) -> None:
    if isinstance(change, RefundStatusChanged):
        _announce_refund(change)
    elif isinstance(change, CheckoutSessionChanged):
        _announce_checkout(change)
    else:
        _announce_payment(change)


def _present(**fields: object) -> dict[str, object]:
    return {name: value for name, value in fields.items() if value is not None}


def _announce_payment(change: PaymentStatusChanged) -> None:
    log.info(
        "payment_status_changed",
        payment_id=change.payment_id,
        merchant_id=change.merchant_id,
        status=change.status.value,
        by=change.by,
        # Written by a group-commit writer serving many requests: name the one it was.
        **_present(
            code=change.code,
            decline_reason=change.decline_reason,
            amount=change.amount,
            currency=change.currency,
            request_id=change.request_id,
        ),
    )
    PAYMENTS.labels(change.status.value).inc()


def _announce_refund(change: RefundStatusChanged) -> None:
    log.info(
        "refund_status_changed",
        refund_id=change.refund_id,
        payment_id=change.payment_id,
        merchant_id=change.merchant_id,
        status=change.status.value,
        amount=change.amount,
        by=change.by,
        **_present(failure_reason=change.failure_reason, request_id=change.request_id),
    )
    REFUNDS.labels(change.status.value).inc()


def _announce_checkout(change: CheckoutSessionChanged) -> None:
    log.info(
        "checkout_session_changed",
        session_id=change.session_id,
        merchant_id=change.merchant_id,
        status=change.status.value,
        by=change.by,
        **_present(payment_id=change.payment_id, request_id=change.request_id),
    )
    CHECKOUT_SESSIONS.labels(change.status.value).inc()
