"""Verification per secret with the library, and what counts as a whsec_ secret."""

from __future__ import annotations

import time

from payment_gateway.domain.webhooks import WebhookMessage, new_webhook_secret
from payment_gateway.webhooks.sender import sign
from payment_gateway.webhooks.verification import is_webhook_secret, verify

NEW, OLD, OTHER = new_webhook_secret(), new_webhook_secret(), new_webhook_secret()


def signed_headers(message: WebhookMessage, timestamp: int) -> dict[str, str]:
    return {
        "Webhook-Id": message.event_id,
        "Webhook-Timestamp": str(timestamp),
        "Webhook-Signature": sign(message, timestamp),
    }


def test_each_secret_that_signed_is_named() -> None:
    message = WebhookMessage("evt_1", b'{"a": 1}', (NEW, OLD))
    checked = verify(message.body, signed_headers(message, int(time.time())), [OTHER, OLD, NEW])
    assert checked.ok
    assert checked.matched == (OLD, NEW)
    assert checked.error is None


def test_a_changed_body_or_an_old_timestamp_does_not_verify() -> None:
    message = WebhookMessage("evt_1", b'{"a": 1}', (NEW,))
    headers = signed_headers(message, int(time.time()))
    assert verify(b'{"a":1}', headers, [NEW]).error == "No matching signature found"
    old = signed_headers(message, int(time.time()) - 600)
    assert verify(message.body, old, [NEW]).error == "Message timestamp too old"


def test_malformed_headers_are_a_failed_verification_not_a_crash() -> None:
    headers = {"webhook-id": "e", "webhook-timestamp": "9999999999", "webhook-signature": "junk"}
    assert not verify(b"{}", headers, [NEW]).ok
    assert not verify(b"\xff", {"webhook-id": "e"}, [NEW]).ok
    assert verify(b"{}", {}, []).error == "no secret to verify with"


def test_what_is_a_whsec_secret() -> None:
    assert is_webhook_secret(NEW)
    assert not is_webhook_secret("nope")  # the library would take it
    assert not is_webhook_secret("whsec_")
    assert not is_webhook_secret("whsec_not*base64")
    assert not is_webhook_secret(NEW.removeprefix("whsec_"))
