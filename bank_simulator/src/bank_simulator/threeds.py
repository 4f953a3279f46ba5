"""3-D Secure authentications: the simulator as the card issuer's access control server (ACS).

The gateway asks for an authentication of a card and amount. An enrolled card is either
authenticated at once (frictionless) or needs a challenge: the shopper's browser is sent to the
challenge page, enters the one-time code (or cancels), and is sent back to ``return_url``; the
gateway then reads the result here, server-side. A challenge is answered once: afterwards the
authentication never changes.
"""

from __future__ import annotations

import hmac
import secrets
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from bank_simulator.cards import CHALLENGE_CODE, Enrolment

VERSION = "2.2.0"  # the EMV 3-D Secure protocol version the simulated ACS speaks
AUTHENTICATED_ECI = "05"  # Electronic Commerce Indicator of a fully authenticated Visa payment
CHALLENGE_PATH = "/3ds/challenge/"


class AuthenticationStatus(StrEnum):
    AUTHENTICATED = "authenticated"
    NOT_ENROLLED = "not_enrolled"
    CHALLENGE_REQUIRED = "challenge_required"
    FAILED = "failed"


class Flow(StrEnum):
    FRICTIONLESS = "frictionless"
    CHALLENGE = "challenge"


class FailureReason(StrEnum):
    WRONG_CODE = "wrong_code"
    CANCELED = "canceled"


@dataclass(slots=True)
class Authentication:
    """One authentication. Its identity is fixed; only a challenge's answer changes it, once."""

    id: str
    reference: str
    card_fingerprint: bytes
    last4: str  # all the challenge page shows of the card
    amount: int
    currency: str
    return_url: str
    flow: Flow | None
    status: AuthenticationStatus
    failure_reason: FailureReason | None = None
    # Bound to this authentication: the challenge form must send it back (CSRF).
    csrf_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))

    @classmethod
    def start(
        cls,
        reference: str,
        card_fingerprint: bytes,
        last4: str,
        amount: int,
        currency: str,
        return_url: str,
        enrolment: Enrolment,
    ) -> Authentication:
        flow, status = {
            Enrolment.CHALLENGE: (Flow.CHALLENGE, AuthenticationStatus.CHALLENGE_REQUIRED),
            Enrolment.FRICTIONLESS: (Flow.FRICTIONLESS, AuthenticationStatus.AUTHENTICATED),
            Enrolment.NOT_ENROLLED: (None, AuthenticationStatus.NOT_ENROLLED),
        }[enrolment]
        return cls(
            id=str(uuid.uuid4()),
            reference=reference,
            card_fingerprint=card_fingerprint,
            last4=last4,
            amount=amount,
            currency=currency,
            return_url=return_url,
            flow=flow,
            status=status,
        )

    def matches(self, card_fingerprint: bytes, amount: int, currency: str, return_url: str) -> bool:
        return (
            hmac.compare_digest(self.card_fingerprint, card_fingerprint)
            and self.amount == amount
            and self.currency == currency
            and self.return_url == return_url
        )

    def covers(self, card_fingerprint: bytes, amount: int, currency: str) -> bool:
        """Whether this authentication lets a deposit of this card and amount through."""
        return (
            self.status is AuthenticationStatus.AUTHENTICATED
            and hmac.compare_digest(self.card_fingerprint, card_fingerprint)
            and self.amount == amount
            and self.currency == currency
        )

    @property
    def awaits_challenge(self) -> bool:
        return self.status is AuthenticationStatus.CHALLENGE_REQUIRED

    def csrf_token_matches(self, token: str) -> bool:
        """Constant-time comparison with the token the challenge page was given."""
        return hmac.compare_digest(token.encode(), self.csrf_token.encode())

    def answer(self, code: str | None, *, cancel: bool = False) -> bool:
        """Apply the shopper's answer to the challenge; ``False`` (nothing changed) when the
        challenge was answered before or there is none."""
        if not self.awaits_challenge:
            return False
        if cancel:
            self.status, self.failure_reason = AuthenticationStatus.FAILED, FailureReason.CANCELED
        elif code is not None and hmac.compare_digest(code.encode(), CHALLENGE_CODE.encode()):
            self.status = AuthenticationStatus.AUTHENTICATED
        else:
            self.status, self.failure_reason = AuthenticationStatus.FAILED, FailureReason.WRONG_CODE
        return True


def challenge_url(public_url: str, authentication: Authentication) -> str | None:
    if authentication.flow is not Flow.CHALLENGE:
        return None
    return public_url + CHALLENGE_PATH + authentication.id


def authentication_view(authentication: Authentication, public_url: str) -> dict[str, Any]:
    """The public representation of the authentication as it stands now."""
    authenticated = authentication.status is AuthenticationStatus.AUTHENTICATED
    reason = authentication.failure_reason
    return {
        "id": authentication.id,
        "reference": authentication.reference,
        "status": authentication.status.value,
        "flow": authentication.flow.value if authentication.flow is not None else None,
        "challenge_url": challenge_url(public_url, authentication),
        "eci": AUTHENTICATED_ECI if authenticated else None,
        "version": VERSION,
        "failure_reason": reason.value if reason is not None else None,
    }
