"""Retry-After as seconds or as an HTTP-date (RFC 9110, section 10.2.3)."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
from payment_gateway.webhooks.retry_after import parse_retry_after

NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        (" 0 ", 0.0),
        ("Wed, 25 Nov 2026 12:00:30 GMT", 30.0),
        ("Wednesday, 25-Nov-26 12:01:00 GMT", 60.0),  # the obsolete RFC 850 form
        ("Wed Nov 25 12:00:10 2026", 10.0),  # asctime: GMT without saying so
        ("Wed, 25 Nov 2026 11:00:00 GMT", 0.0),  # in the past: no wait, never a negative one
    ],
)
def test_seconds_and_dates(value: str, seconds: float) -> None:
    assert parse_retry_after(value, now=NOW) == seconds


@pytest.mark.parametrize("value", [None, "", "soon", "-5", "1.5", "١٢", "9" * 5000])
def test_what_is_not_a_retry_after_is_none(value: str | None) -> None:
    assert parse_retry_after(value, now=NOW) is None


def test_the_clock_defaults_to_now() -> None:
    later = datetime.fromtimestamp(datetime.now(UTC).timestamp() + 100, tz=UTC)
    seconds = parse_retry_after(format_datetime(later, usegmt=True))
    assert seconds is not None
    assert 95 <= seconds <= 100
