"""What a bank answer means for a payment (docs/design.md, The payment flow)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from payment_gateway.domain.operations import OperationResolution, OperationStatus
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


def resolve_deposit(result: BankAnswer | BankFault, *, capture: bool = True) -> Resolution:
    """Map a deposit attempt's result to the payment's next status.

    An approved deposit made with ``capture=False`` is only an authorization.
    """
    if isinstance(result, BankFault):
        if result is BankFault.NOT_SENT:
            return Resolution(PaymentStatus.FAILED, decline_reason=DeclineReason.BANK_UNAVAILABLE)
        if result is BankFault.REJECTED:
            return Resolution(PaymentStatus.FAILED, decline_reason=DeclineReason.BANK_REJECTED)
        return Resolution(PaymentStatus.PROCESSING)
    if result.code == CODE_APPROVED:
        status = PaymentStatus.SUCCEEDED if capture else PaymentStatus.AUTHORIZED
        return Resolution(status, code=CODE_APPROVED, tracking_id=result.transaction_id)
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


def resolve_operation(result: BankAnswer | BankFault) -> OperationResolution:
    """Map a capture's, void's or refund's result to the operation's status.

    The same table as a deposit's: nothing sent or refused by the bank fails it; an answer
    that may hide a done operation leaves it pending, for the reconciler to ask about.
    """
    if isinstance(result, BankFault):
        if result is BankFault.NOT_SENT:
            return OperationResolution(OperationStatus.FAILED, DeclineReason.BANK_UNAVAILABLE)
        if result is BankFault.REJECTED:
            return OperationResolution(OperationStatus.FAILED, DeclineReason.BANK_REJECTED)
        return OperationResolution(OperationStatus.PENDING)
    if result.code == CODE_APPROVED:
        return OperationResolution(OperationStatus.SUCCEEDED, tracking_id=result.transaction_id)
    if result.code == CODE_DECLINED:
        reason = result.reason or "declined"
        return OperationResolution(OperationStatus.FAILED, reason, result.transaction_id)
    return OperationResolution(OperationStatus.PENDING, tracking_id=result.transaction_id)
