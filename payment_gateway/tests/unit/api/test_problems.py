"""Rendering errors: field names and problem+json bodies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import orjson
from payment_gateway.api.problems import field_errors, render_gateway_error
from payment_gateway.domain.card import CardSummary
from payment_gateway.domain.payment import Payment, PaymentStatus
from payment_gateway.service.documents import payment_document
from payment_gateway.service.errors import FieldError, IdempotencyKeyReused, Unauthorized


def test_field_errors_strip_the_location_kind() -> None:
    errors = field_errors(
        [{"loc": ("header", "Idempotency-Key"), "msg": "String should have at most 255"}],
        strip=1,
    )
    assert errors == [FieldError("Idempotency-Key", "String should have at most 255")]


def test_field_errors_drop_value_error_prefix() -> None:
    (error,) = field_errors([{"loc": ("amount",), "msg": "Value error, too big", "type": "x"}])
    assert error == FieldError("amount", "too big")


def test_unauthorized_renders_www_authenticate() -> None:
    response = render_gateway_error(Unauthorized("missing bearer API key"))
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.media_type == "application/problem+json"


def test_422_problem_lists_errors() -> None:
    exc = IdempotencyKeyReused("reused", errors=[FieldError("Idempotency-Key", "was used")])
    response = render_gateway_error(exc)
    body = orjson.loads(response.body)
    assert response.status_code == 422
    assert body["status"] == 422
    assert body["type"].endswith("idempotency-key-reused")
    assert body["errors"] == [{"field": "Idempotency-Key", "message": "was used"}]


def test_payment_document_shape() -> None:
    created = datetime(2026, 11, 25, 13, 0, tzinfo=timezone(timedelta(hours=1)))
    document = payment_document(
        Payment(
            id="p-1",
            merchant_id="m-1",
            status=PaymentStatus.SUCCEEDED,
            amount=1000,
            currency="USD",
            reference="order-1234",
            card=CardSummary("0005", "amex", 1, 2042),
            created_at=created,
            updated_at=datetime(2026, 11, 25, 12, 0, 0, 123, tzinfo=UTC),
            code="0",
            tracking_id="tx-1",
        )
    )
    assert document["status"] == "succeeded"
    assert document["card"] == {
        "masked_number": "**** **** **** 0005",
        "last4": "0005",
        "brand": "amex",
        "expiry_month": 1,
        "expiry_year": 2042,
    }
    assert document["created_at"] == "2026-11-25T12:00:00.000000Z"
    assert document["updated_at"] == "2026-11-25T12:00:00.000123Z"
    assert "merchant_id" not in document
