"""Checks a received webhook's signature with the Standard Webhooks library, per secret.

What a merchant's endpoint does, here for `webhooks listen` and the tests' receiver. Each
secret is tried on its own, so that during a rotation one can see which secrets signed.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from standardwebhooks import Webhook, WebhookVerificationError

from payment_gateway.domain.webhooks import SECRET_PREFIX


@dataclass(frozen=True, slots=True)
class Verification:
    matched: tuple[str, ...]  # the secrets with a valid signature on the request
    error: str | None  # why none matched, e.g. "No matching signature found"

    @property
    def ok(self) -> bool:
        return bool(self.matched)


def verify(body: bytes, headers: Mapping[str, str], secrets: Iterable[str]) -> Verification:
    """Which of `secrets` signed this body and these headers (the timestamp within 5 min)."""
    plain = {name.lower(): value for name, value in headers.items()}
    matched: list[str] = []
    error: str | None = "no secret to verify with"
    for secret in secrets:
        try:
            Webhook(secret).verify(body, plain, json_parse=False)
        # The library lets a malformed header or body escape as ValueError (bad base64, no
        # comma in a signature, a body that is not UTF-8): a failed verification all the same.
        except (WebhookVerificationError, ValueError) as exc:
            error = str(exc) or type(exc).__name__
        else:
            matched.append(secret)
    return Verification(tuple(matched), None if matched else error)


def is_webhook_secret(text: str) -> bool:
    """``whsec_`` then strict base64 of some bytes: stricter than the library, which would
    take almost any text (``"nope"`` is base64 too) and then never verify anything."""
    if not text.startswith(SECRET_PREFIX):
        return False
    try:
        return bool(base64.b64decode(text.removeprefix(SECRET_PREFIX), validate=True))
    except (binascii.Error, ValueError):
        return False
