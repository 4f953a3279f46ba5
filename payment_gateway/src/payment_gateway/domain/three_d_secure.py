"""3-D Secure: what the card issuer's access control server says, and what it means for a
payment (docs/design.md, 3-D Secure)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from payment_gateway.domain.payment import PaymentStatus, Resolution


class AuthenticationStatus(StrEnum):
    """The bank's word on one authentication."""

    AUTHENTICATED = "authenticated"
    NOT_ENROLLED = "not_enrolled"
    CHALLENGE_REQUIRED = "challenge_required"  # the shopper has to answer a challenge
    FAILED = "failed"


class AuthenticationResult(StrEnum):
    """What the payment shows once the authentication is over."""

    AUTHENTICATED = "authenticated"
    FAILED = "failed"
    NOT_ENROLLED = "not_enrolled"


class AuthenticationFailure(StrEnum):
    """Decline reasons of a payment that 3-D Secure stopped."""

    FAILED = "authentication_failed"
    EXPIRED = "authentication_expired"  # the shopper never finished the challenge


@dataclass(frozen=True, slots=True)
class Authentication:
    """A well-formed answer of the bank about an authentication."""

    id: str
    status: AuthenticationStatus
    flow: str | None = None  # "frictionless" | "challenge"
    challenge_url: str | None = None
    eci: str | None = None
    version: str | None = None


@dataclass(frozen=True, slots=True)
class ThreeDSecure:
    """A payment's 3-D Secure: asked for with ``return_url``, then filled in as it goes."""

    return_url: str  # the merchant's page the shopper comes back to after a challenge
    authentication_id: str | None = None
    flow: str | None = None
    result: AuthenticationResult | None = None  # None while a challenge awaits its answer
    eci: str | None = None
    version: str | None = None
    challenge_url: str | None = None  # where to send the shopper while the payment waits

    def learned(self, authentication: Authentication) -> ThreeDSecure:
        """This 3-D Secure as the bank's answer ``authentication`` leaves it."""
        result = _RESULTS.get(authentication.status)
        return replace(
            self,
            authentication_id=authentication.id,
            flow=authentication.flow,
            result=result,
            eci=authentication.eci,
            version=authentication.version,
            challenge_url=authentication.challenge_url if result is None else None,
        )

    def document(self) -> dict[str, Any]:
        """What the payment shows of it (never the URLs: the merchant knows its own)."""
        return {
            "authentication_flow": self.flow,
            "result": self.result.value if self.result is not None else None,
            "eci": self.eci,
            "version": self.version,
        }

    def to_record(self) -> dict[str, Any]:
        return {
            "return_url": self.return_url,
            "authentication_id": self.authentication_id,
            "flow": self.flow,
            "result": self.result.value if self.result is not None else None,
            "eci": self.eci,
            "version": self.version,
            "challenge_url": self.challenge_url,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> ThreeDSecure:
        result = record.get("result")
        return cls(
            return_url=record["return_url"],
            authentication_id=record.get("authentication_id"),
            flow=record.get("flow"),
            result=AuthenticationResult(result) if result is not None else None,
            eci=record.get("eci"),
            version=record.get("version"),
            challenge_url=record.get("challenge_url"),
        )


_RESULTS = {
    AuthenticationStatus.AUTHENTICATED: AuthenticationResult.AUTHENTICATED,
    AuthenticationStatus.NOT_ENROLLED: AuthenticationResult.NOT_ENROLLED,
    AuthenticationStatus.FAILED: AuthenticationResult.FAILED,
}


def resolve_authentication(
    three_d_secure: ThreeDSecure, authentication: Authentication
) -> Resolution | None:
    """Where an authentication's answer takes its payment; None: on to the deposit.

    A challenge moves the payment to ``requires_action`` (the shopper's turn); a failure fails
    it; an authenticated or not-enrolled card goes to the bank (``init`` again after a
    challenge: the deposit is on its way, as for a new payment).
    """
    after = three_d_secure.learned(authentication)
    if authentication.status is AuthenticationStatus.CHALLENGE_REQUIRED:
        return Resolution(PaymentStatus.REQUIRES_ACTION, three_d_secure=after)
    if authentication.status is AuthenticationStatus.FAILED:
        return Resolution(
            PaymentStatus.FAILED,
            decline_reason=AuthenticationFailure.FAILED,
            three_d_secure=after,
        )
    return None


def expired(three_d_secure: ThreeDSecure) -> Resolution:
    """A challenge left unanswered past its deadline."""
    return Resolution(
        PaymentStatus.FAILED,
        decline_reason=AuthenticationFailure.EXPIRED,
        three_d_secure=replace(
            three_d_secure, result=AuthenticationResult.FAILED, challenge_url=None
        ),
    )
