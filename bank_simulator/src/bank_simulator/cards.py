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
CARD_DECLINED = Outcome(Status.FAILED, "100", "card_declined")
AUTHENTICATION_REQUIRED = Outcome(Status.FAILED, "100", "authentication_required")

REFUND_DECLINING_CARD = "4000000000005126"


class Enrolment(StrEnum):
    """How the card's issuer runs 3-D Secure for it (the simulator plays its ACS)."""

    CHALLENGE = "challenge"  # the shopper must enter the one-time code
    FRICTIONLESS = "frictionless"  # authenticated at once, no challenge
    NOT_ENROLLED = "not_enrolled"


# The one-time code that passes a challenge (shown on the challenge page as the test code).
CHALLENGE_CODE = "1234"

# Enrolled cards: a deposit with one needs an authenticated 3-D Secure authentication of the
# same card and amount, else it is declined authentication_required.
THREE_DS_CARDS: dict[str, Enrolment] = {
    "4000000000003220": Enrolment.CHALLENGE,
    "4000002760003184": Enrolment.CHALLENGE,  # every time (as is every challenge card here)
    "4000008400001629": Enrolment.CHALLENGE,  # then the deposit is declined card_declined
    "4000000000003055": Enrolment.FRICTIONLESS,
}

TEST_CARDS: dict[str, Outcome] = {
    "4242424242424242": SUCCEEDED,
    "4000000000000002": INSUFFICIENT_FUNDS,
    "4000000000009995": PENDING,
    REFUND_DECLINING_CARD: SUCCEEDED,
    "4000000000003220": SUCCEEDED,
    "4000002760003184": SUCCEEDED,
    "4000008400001629": CARD_DECLINED,
    "4000000000003055": SUCCEEDED,
}


def enrolment(card_number: str) -> Enrolment:
    """Whether, and how, 3-D Secure applies to this card."""
    return THREE_DS_CARDS.get(card_number, Enrolment.NOT_ENROLLED)


def outcome_for(card_number: str, *, capture: bool = True, authenticated: bool = False) -> Outcome:
    """The outcome a deposit with this card number gets when it is first recorded.

    Without capture, a charge that would succeed is only authorized; declines stay declines.
    A card enrolled in 3-D Secure is declined ``authentication_required`` unless
    ``authenticated`` (the deposit named an authenticated authentication of it).
    """
    if card_number in THREE_DS_CARDS and not authenticated:
        return AUTHENTICATION_REQUIRED
    outcome = TEST_CARDS.get(card_number, CARD_NOT_SUPPORTED)
    if not capture and outcome is SUCCEEDED:
        return AUTHORIZED
    return outcome


def declines_refunds(card_number: str) -> bool:
    """Whether every refund of a deposit made with this card is declined."""
    return card_number == REFUND_DECLINING_CARD
