"""The simulated bank's test cards and the outcome each one produces."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Status(StrEnum):
    SUCCEEDED = "succeeded"  # charged: captured at once, or authorized and then captured
    AUTHORIZED = "authorized"  # held only (capture=false), waiting for a capture or a void
    VOIDED = "voided"  # an authorization released by a void
    FAILED = "failed"
    PENDING = "pending"


@dataclass(frozen=True, slots=True)
class Outcome:
    status: Status
    code: str
    reason: str | None = None


SUCCEEDED = Outcome(Status.SUCCEEDED, "0")
AUTHORIZED = Outcome(Status.AUTHORIZED, "0")
VOIDED = Outcome(Status.VOIDED, "0")
INSUFFICIENT_FUNDS = Outcome(Status.FAILED, "100", "insufficient_funds")
PENDING = Outcome(Status.PENDING, "200")
CARD_NOT_SUPPORTED = Outcome(Status.FAILED, "100", "card_not_supported")
REFUND_DECLINED = Outcome(Status.FAILED, "100", "refund_declined")

REFUND_DECLINING_CARD = "4000000000005126"

TEST_CARDS: dict[str, Outcome] = {
    "4242424242424242": SUCCEEDED,
    "4000000000000002": INSUFFICIENT_FUNDS,
    "4000000000009995": PENDING,
    REFUND_DECLINING_CARD: SUCCEEDED,
}


def outcome_for(card_number: str, *, capture: bool = True) -> Outcome:
    """The outcome a deposit with this card number gets when it is first recorded.

    Without capture, a charge that would succeed is only authorized; declines stay declines.
    """
    outcome = TEST_CARDS.get(card_number, CARD_NOT_SUPPORTED)
    if not capture and outcome is SUCCEEDED:
        return AUTHORIZED
    return outcome


def declines_refunds(card_number: str) -> bool:
    """Whether every refund of a deposit made with this card is declined."""
    return card_number == REFUND_DECLINING_CARD
