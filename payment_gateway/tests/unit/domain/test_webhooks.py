"""The webhook records: what a message must be, when an attempt counts as delivered."""

from __future__ import annotations

import base64

import pytest
from payment_gateway.domain.webhooks import (
    SendResult,
    UnsafeWebhookUrl,
    WebhookMessage,
    new_webhook_secret,
)
from standardwebhooks import Webhook


def result(status: int | None) -> SendResult:
    return SendResult(status, 5, None, None, None)


@pytest.mark.parametrize(("status", "delivered"), [(200, True), (204, True), (299, True)])
def test_a_2xx_is_delivered(status: int, delivered: bool) -> None:
    assert result(status).delivered is delivered


@pytest.mark.parametrize("status", [None, 199, 301, 410, 500])
def test_anything_else_is_not(status: int | None) -> None:
    assert not result(status).delivered


def test_a_new_secret_is_random_base64_the_library_reads() -> None:
    secret = new_webhook_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) >= 24
    assert secret != new_webhook_secret()
    Webhook(secret)  # accepted


def test_a_message_without_a_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="secret"):
        WebhookMessage("evt_1", b"{}", ())


@pytest.mark.parametrize("event_id", ["", "evt 1", "evt\r\n1", "a,b"])
def test_an_event_id_that_would_break_the_headers_is_refused(event_id: str) -> None:
    with pytest.raises(ValueError, match="event id"):
        WebhookMessage(event_id, b"{}", (new_webhook_secret(),))


def test_a_body_that_is_not_utf8_is_refused() -> None:
    with pytest.raises(ValueError, match="UTF-8"):
        WebhookMessage("evt_1", b"\xff\xfe", (new_webhook_secret(),))


def test_unsafe_url_carries_its_reason() -> None:
    error = UnsafeWebhookUrl("url must use https")
    assert error.reason == str(error) == "url must use https"
