"""What a bank answer means for a payment (docs/design.md, The payment flow)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from payment_gateway.domain.payment import DeclineReason, PaymentStatus, Resolution

CODE_APPROVED = "0"
CODE_DECLINED = "100"
CODE_PENDING = "200"


class BankFault(StrEnum):
    """Ways a bank call can go wrong, by what they tell us about the money."""

    NOT_SENT = "not_sent"  # no connection, connect/pool timeout: the bank never saw it
    REJECTED = "rejected"  # a 4xx (not 408/429): the bank refused the request itself
    UNCERTAIN = "uncertain"  # sent but no usable answer: it may or may not have been charged


@dataclass(frozen=True, slots=True)
class BankAnswer:
    """A well-formed answer from the bank about one deposit."""

    code: str
    reason: str | None
    transaction_id: str | None


def resolve_deposit(result: BankAnswer | BankFault) -> Resolution:
    """Map a deposit attempt's result to the payment's next status."""
    if isinstance(result, BankFault):
        if result is BankFault.NOT_SENT:
            return Resolution(PaymentStatus.FAILED, decline_reason=DeclineReason.BANK_UNAVAILABLE)
        if result is BankFault.REJECTED:
            return Resolution(PaymentStatus.FAILED, decline_reason=DeclineReason.BANK_REJECTED)
        return Resolution(PaymentStatus.PROCESSING)
    if result.code == CODE_APPROVED:
        return Resolution(
            PaymentStatus.SUCCEEDED, code=CODE_APPROVED, tracking_id=result.transaction_id
        )
    if result.code == CODE_DECLINED:
        return Resolution(
            PaymentStatus.FAILED,
            code=CODE_DECLINED,
            decline_reason=result.reason or "declined",
            tracking_id=result.transaction_id,
        )
    if result.code == CODE_PENDING:
        return Resolution(
            PaymentStatus.PROCESSING, code=CODE_PENDING, tracking_id=result.transaction_id
        )
    # An unknown code is not a decline we can trust: reconcile it later.
    return Resolution(PaymentStatus.PROCESSING, tracking_id=result.transaction_id)
