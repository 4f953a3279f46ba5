"""Webhooks as the rest of the gateway sees them: a signed message, an attempt's result.

Signing, sending and the checks on a merchant's URL live in the ``webhooks`` adapter; this
module holds only the records passed across it, so the service layer never sees HTTP.
"""

from __future__ import annotations

import base64
import secrets as _random
from dataclasses import dataclass

SECRET_PREFIX = "whsec_"  # noqa: S105 - the Standard Webhooks format, not a secret
SECRET_BYTES = 32  # the specification asks for 24 to 64 random bytes
EXCERPT_BYTES = 1024  # how much of a receiver's answer is kept


@dataclass(frozen=True, slots=True)
class WebhookMessage:
    """One event to send: its id, its body exactly as signed, and the secrets to sign with."""

    event_id: str  # sent as the `webhook-id` header
    body: bytes  # sent byte for byte, exactly what was signed
    secrets: tuple[str, ...]  # "whsec_..." secrets, newest first: one `v1,` signature per secret

    def __post_init__(self) -> None:
        # Refused here rather than at send, where a bad message would only look like a failed
        # attempt and be retried for days.
        if not self.secrets:
            raise ValueError("a webhook message needs at least one secret: it is never unsigned")
        if not self.event_id or any(c in self.event_id for c in " \t\r\n,"):
            raise ValueError("the event id must be non-empty, without spaces, commas or breaks")
        try:
            # The library signs text: a body that is not UTF-8 could not be verified.
            self.body.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("a webhook body must be UTF-8") from None


@dataclass(frozen=True, slots=True)
class SendResult:
    """What one delivery attempt came to. Every fault is one of these, never an exception."""

    status_code: int | None  # None when no HTTP answer came
    duration_ms: int
    error: str | None  # short, e.g. "timeout", "connection refused", "unsafe url: <why>"
    response_excerpt: str | None  # the answer's body cut to 1 KiB
    retry_after_seconds: float | None  # from a Retry-After header, never negative

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class UnsafeWebhookUrl(Exception):
    """A URL the gateway will not send to; `reason` is a sentence for a 422 naming `url`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def new_webhook_secret() -> str:
    """A new signing secret, ``whsec_`` + base64 of 32 random bytes, as the library reads it."""
    return SECRET_PREFIX + base64.b64encode(_random.token_bytes(SECRET_BYTES)).decode("ascii")
