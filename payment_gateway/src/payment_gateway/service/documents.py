"""Resources as the API shows them: the same bytes answer a request and fill an event.

Built as plain dicts (not pydantic models) for speed: the API's response models
(api/schemas.py, PaymentOut and RefundOut) document the same shapes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from payment_gateway.domain.checkout import CheckoutSession
from payment_gateway.domain.operations import Operation
from payment_gateway.domain.payment import Payment, PaymentStatus


def timestamp(value: datetime) -> str:
    """RFC 3339 in UTC with microseconds, as every resource shows its times."""
    # isoformat is several times faster than strftime, and this runs twice per response.
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def payment_document(payment: Payment) -> dict[str, Any]:
    """The payment's JSON representation (the shape of PaymentOut)."""
    card, three_d_secure = payment.card, payment.three_d_secure
    return {
        "id": payment.id,
        "status": payment.status.value,
        "code": payment.code,
        "decline_reason": payment.decline_reason,
        "amount": payment.amount,
        "currency": payment.currency,
        "reference": payment.reference,
        "tracking_id": payment.tracking_id,
        "card": {
            "masked_number": card.masked_number,
            "last4": card.last4,
            "brand": card.brand,
            "expiry_month": card.expiry_month,
            "expiry_year": card.expiry_year,
        },
        "capture": payment.capture,
        "amount_captured": payment.amount_captured,
        "amount_refunded": payment.amount_refunded,
        "refunded": payment.refunded,
        "cancellation_reason": payment.cancellation_reason,
        "three_d_secure": three_d_secure.document() if three_d_secure is not None else None,
        "next_action": (
            {"type": "redirect_to_url", "url": three_d_secure.challenge_url}
            if three_d_secure is not None
            and three_d_secure.challenge_url is not None
            and payment.status is PaymentStatus.REQUIRES_ACTION
            else None
        ),
        "created_at": timestamp(payment.created_at),
        "updated_at": timestamp(payment.updated_at),
    }


def refund_document(refund: Operation) -> dict[str, Any]:
    """The refund's JSON representation (shape of RefundOut)."""
    return {
        "id": refund.id,
        "object": "refund",
        "payment_id": refund.payment_id,
        "amount": refund.amount,
        "currency": refund.currency,
        "status": refund.status.value,
        "reason": refund.reason,
        "failure_reason": refund.failure_reason,
        "reference": refund.reference,
        "created_at": timestamp(refund.created_at),
        "updated_at": timestamp(refund.updated_at),
    }


def checkout_session_document(session: CheckoutSession) -> dict[str, Any]:
    """The checkout session's JSON representation (shape of CheckoutSessionOut)."""
    return {
        "id": session.id,
        "object": "checkout.session",
        "url": session.url,
        "status": session.status.value,
        "payment_status": session.payment_status.value,
        "amount": session.amount,
        "currency": session.currency,
        "reference": session.reference,
        "capture": session.capture,
        "success_url": session.success_url,
        "cancel_url": session.cancel_url,
        "payment_id": session.payment_id,
        "expires_at": timestamp(session.expires_at),
        "created_at": timestamp(session.created_at),
        "updated_at": timestamp(session.updated_at),
    }
