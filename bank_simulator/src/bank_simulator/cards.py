"""The simulated bank's test cards and the outcome each one produces."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Status(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    PENDING = "pending"


@dataclass(frozen=True, slots=True)
class Outcome:
    status: Status
    code: str
    reason: str | None = None


SUCCEEDED = Outcome(Status.SUCCEEDED, "0")
INSUFFICIENT_FUNDS = Outcome(Status.FAILED, "100", "insufficient_funds")
PENDING = Outcome(Status.PENDING, "200")
CARD_NOT_SUPPORTED = Outcome(Status.FAILED, "100", "card_not_supported")

TEST_CARDS: dict[str, Outcome] = {
    "4242424242424242": SUCCEEDED,
    "4000000000000002": INSUFFICIENT_FUNDS,
    "4000000000009995": PENDING,
}


def outcome_for(card_number: str) -> Outcome:
    """The outcome a deposit with this card number gets when it is first recorded."""
    return TEST_CARDS.get(card_number, CARD_NOT_SUPPORTED)
