"""What a 3-D Secure answer means for a payment."""

from __future__ import annotations

import pytest
from payment_gateway.domain.payment import PaymentStatus
from payment_gateway.domain.three_d_secure import (
    Authentication,
    AuthenticationResult,
    AuthenticationStatus,
    ThreeDSecure,
    expired,
    resolve_authentication,
)

ASKED = ThreeDSecure(return_url="https://shop.example/back")


def answer(status: AuthenticationStatus, **fields: str) -> Authentication:
    return Authentication(id="auth-1", status=status, version="2.2.0", **fields)


def test_a_challenge_waits_for_the_shopper_at_the_banks_page() -> None:
    challenge = answer(
        AuthenticationStatus.CHALLENGE_REQUIRED,
        flow="challenge",
        challenge_url="https://bank.example/3ds/challenge/auth-1",
    )

    resolution = resolve_authentication(ASKED, challenge)

    assert resolution is not None
    assert resolution.status is PaymentStatus.REQUIRES_ACTION
    assert resolution.three_d_secure == ThreeDSecure(
        return_url=ASKED.return_url,
        authentication_id="auth-1",
        flow="challenge",
        result=None,
        version="2.2.0",
        challenge_url="https://bank.example/3ds/challenge/auth-1",
    )


def test_a_failed_authentication_fails_the_payment_without_a_deposit() -> None:
    resolution = resolve_authentication(
        ASKED, answer(AuthenticationStatus.FAILED, flow="challenge")
    )

    assert resolution is not None
    assert (resolution.status, resolution.decline_reason) == (
        PaymentStatus.FAILED,
        "authentication_failed",
    )
    assert resolution.three_d_secure is not None
    assert resolution.three_d_secure.result is AuthenticationResult.FAILED


@pytest.mark.parametrize(
    ("status", "result"),
    [
        (AuthenticationStatus.AUTHENTICATED, AuthenticationResult.AUTHENTICATED),
        (AuthenticationStatus.NOT_ENROLLED, AuthenticationResult.NOT_ENROLLED),
    ],
)
def test_authenticated_or_not_enrolled_goes_on_to_the_deposit(
    status: AuthenticationStatus, result: AuthenticationResult
) -> None:
    authentication = answer(status, eci="05")

    assert resolve_authentication(ASKED, authentication) is None
    learned = ASKED.learned(authentication)
    assert (learned.result, learned.authentication_id, learned.challenge_url) == (
        result,
        "auth-1",
        None,
    )


def test_an_unanswered_challenge_expires_as_failed_and_forgets_its_page() -> None:
    waiting = ASKED.learned(
        answer(AuthenticationStatus.CHALLENGE_REQUIRED, challenge_url="https://bank/c")
    )

    resolution = expired(waiting)

    assert (resolution.status, resolution.decline_reason) == (
        PaymentStatus.FAILED,
        "authentication_expired",
    )
    assert resolution.three_d_secure is not None
    assert resolution.three_d_secure.result is AuthenticationResult.FAILED
    assert resolution.three_d_secure.challenge_url is None


def test_the_record_round_trips_and_the_document_hides_the_urls() -> None:
    learned = ASKED.learned(
        answer(AuthenticationStatus.AUTHENTICATED, flow="frictionless", eci="05")
    )

    assert ThreeDSecure.from_record(learned.to_record()) == learned
    assert learned.document() == {
        "authentication_flow": "frictionless",
        "result": "authenticated",
        "eci": "05",
        "version": "2.2.0",
    }
