"""Checkout session rules: redirect URLs, the success redirect, attempts, expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from payment_gateway.domain.checkout import (
    PENDING_PAYMENT_STATUSES,
    CardEntry,
    CheckoutSession,
    CheckoutStatus,
    attempt_key,
    challenge_return_url,
    page_url,
)
from payment_gateway.domain.payment import PaymentRequest, PaymentStatus
from payment_gateway.domain.urls import web_origin

NOW = datetime(2030, 6, 15, 12, 0, tzinfo=UTC)


def session(**changes: object) -> CheckoutSession:
    values: dict[str, object] = {
        "id": "cs_1",
        "merchant_id": "m-1",
        "status": CheckoutStatus.OPEN,
        "amount": 1000,
        "currency": "EUR",
        "reference": "order-1",
        "success_url": "https://shop.example/ok?order=1",
        "cancel_url": "https://shop.example/cart",
        "capture": True,
        "url": "https://pay.example/checkout/cs_1",
        "created_at": NOW,
        "updated_at": NOW,
        "expires_at": NOW + timedelta(hours=1),
    }
    values.update(changes)
    return CheckoutSession(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://shop.example/ok", "https://shop.example/ok?session_id=cs_1"),
        ("https://shop.example/ok?a=1&b=", "https://shop.example/ok?a=1&b=&session_id=cs_1"),
        ("https://shop.example/ok?session_id=forged", "https://shop.example/ok?session_id=cs_1"),
        ("https://shop.example/ok#done", "https://shop.example/ok?session_id=cs_1#done"),
    ],
)
def test_the_success_redirect_adds_the_session_id(url: str, expected: str) -> None:
    assert session(success_url=url).success_redirect() == expected


def test_web_origin_is_scheme_host_and_port() -> None:
    assert web_origin("https://shop.example:8443/x?y=1#z") == "https://shop.example:8443"


def test_a_session_takes_payments_until_it_expires_or_closes() -> None:
    open_session = session()
    assert open_session.accepts_payment(NOW)
    assert not open_session.accepts_payment(open_session.expires_at)
    assert not session(status=CheckoutStatus.COMPLETE).accepts_payment(NOW)
    assert not session(status=CheckoutStatus.EXPIRED).accepts_payment(NOW)


def test_the_page_and_its_return_route() -> None:
    assert page_url("https://pay.example", "cs_1") == "https://pay.example/checkout/cs_1"
    assert challenge_return_url("https://pay.example", "cs_1") == (
        "https://pay.example/checkout/cs_1/return"
    )


def test_each_attempt_has_its_own_idempotency_key() -> None:
    assert attempt_key("cs_1", 0) == "checkout:cs_1:0"
    assert attempt_key("cs_1", 0) != attempt_key("cs_1", 1) != attempt_key("cs_2", 1)


def test_a_payment_may_still_succeed_unless_terminal_or_authorized() -> None:
    assert PaymentStatus.INIT in PENDING_PAYMENT_STATUSES
    assert PaymentStatus.PROCESSING in PENDING_PAYMENT_STATUSES
    assert PaymentStatus.AUTHORIZED not in PENDING_PAYMENT_STATUSES
    assert not any(status.is_terminal for status in PENDING_PAYMENT_STATUSES)


def test_the_card_pays_the_sessions_amount_and_never_shows_in_a_repr() -> None:
    card = CardEntry("4242424242424242", "123", 12, 2042, "Ada")
    request = card.payment_request(session(capture=False), "https://pay.example/back")
    assert (request.amount, request.currency, request.reference) == (1000, "EUR", "order-1")
    assert (request.capture, request.checkout_session_id) == (False, "cs_1")
    assert request.three_d_secure_return_url == "https://pay.example/back"
    assert "4242" not in repr(card)
    assert "Ada" not in repr(card)


def test_the_session_is_part_of_the_fingerprint_only_when_set() -> None:
    api = PaymentRequest("4242424242424242", "123", 12, 2042, None, 1000, "EUR", "r")
    hosted = CardEntry("4242424242424242", "123", 12, 2042, None).payment_request(
        session(reference="r"), "https://pay.example/back"
    )
    # An API payment's fingerprint is unchanged by the new field (stored hashes still match).
    assert api.fingerprint_material() == (b'["4242424242424242", 12, 2042, null, 1000, "EUR", "r"]')
    assert hosted.fingerprint_material() != api.fingerprint_material()
