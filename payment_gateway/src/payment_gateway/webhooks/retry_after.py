"""The Retry-After header of a receiver's answer (RFC 9110, section 10.2.3)."""

from __future__ import annotations

import email.utils
import time
from datetime import UTC


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait, from ``delay-seconds`` or an HTTP-date; None when absent or unreadable.

    A date in the past is 0, never a negative wait. Bounding the wait from above is the retry
    policy's business, not the parser's.
    """
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        try:
            return float(int(text))
        except (ValueError, OverflowError):  # more digits than int() or float() take
            return None
    try:
        moment = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        # An HTTP-date is always GMT; the asctime form says so by saying nothing.
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))
