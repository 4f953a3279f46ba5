"""How a committed status change is announced: one log line and one metric."""

from __future__ import annotations

import structlog

from payment_gateway.domain.events import PaymentStatusChanged
from payment_gateway.metrics import PAYMENTS

log = structlog.get_logger(__name__)


def announce(change: PaymentStatusChanged) -> None:
    details = {
        name: value
        for name, value in (
            ("code", change.code),
            ("decline_reason", change.decline_reason),
            ("amount", change.amount),
            ("currency", change.currency),
            # Written by a group-commit writer serving many requests: name the one it was.
            ("request_id", change.request_id),
        )
        if value is not None
    }
    log.info(
        "payment_status_changed",
        payment_id=change.payment_id,
        merchant_id=change.merchant_id,
        status=change.status.value,
        by=change.by,
        **details,
    )
    PAYMENTS.labels(change.status.value).inc()
