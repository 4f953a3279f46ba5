"""The one record every payment state change leaves: a log line and a metric."""

from __future__ import annotations

import structlog

from payment_gateway.observability import PAYMENTS

log = structlog.get_logger(__name__)


def payment_status_changed(
    payment_id: str, merchant_id: str, status: str, **details: object
) -> None:
    log.info(
        "payment_status_changed",
        payment_id=payment_id,
        merchant_id=merchant_id,
        status=status,
        **details,
    )
    PAYMENTS.labels(status, merchant_id).inc()
