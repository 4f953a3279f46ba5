"""The Idempotency-Key rules every use case shares (docs/design.md, Exactly once)."""

from __future__ import annotations

import hashlib
import hmac

from payment_gateway.service.errors import FieldError, IdempotencyKeyReused, RequestInProgress


def fingerprint(hash_key: bytes, material: bytes) -> str:
    """A keyed hash of a request's content, to tell a retry from another request."""
    return hmac.new(hash_key, material, hashlib.sha256).hexdigest()


def ensure_replayable(stored_hash: str | None, request_hash: str, *, in_flight: bool) -> None:
    """Refuse a key's retry that is not one: other content (422), or still running (409).

    A claim without a fingerprint predates migration 0002, which erased the ones that covered
    the CVV: its content cannot be compared, so it answers as a replay (never a second
    charge). Such claims are gone once the idempotency TTL has passed.
    """
    if stored_hash is not None and not hmac.compare_digest(stored_hash, request_hash):
        raise IdempotencyKeyReused(
            "this Idempotency-Key was already used with a different request",
            errors=[FieldError("Idempotency-Key", "was already used with different content")],
        )
    if in_flight:
        raise RequestInProgress(
            "a request with this Idempotency-Key is still being processed; retry later"
        )
