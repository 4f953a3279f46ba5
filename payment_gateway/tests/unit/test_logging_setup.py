"""The redaction guard every log line passes: card numbers and bearer tokens are masked."""

from __future__ import annotations

import pytest
from payment_gateway.logging_setup import redact_text


@pytest.mark.parametrize(
    ("text", "leak"),
    [
        ("charging 4242424242424242 now", "4242424242424242"),
        ("card=4000 0000 0000 0002", "4000 0000 0000 0002"),
        ("card=4000-0000-0000-9995!", "4000-0000-0000-9995"),
        ("Authorization: Bearer first_merchant_mock_token", "first_merchant_mock_token"),
    ],
)
def test_redaction_guard_masks_card_numbers_and_tokens(text: str, leak: str) -> None:
    assert leak not in redact_text(text)


def test_redaction_guard_leaves_ordinary_numbers_alone() -> None:
    line = "amount 100000000000001 payment 1234567890123 at 2026-11-25"  # not Luhn-valid
    assert redact_text(line) == line
