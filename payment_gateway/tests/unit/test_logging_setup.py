"""The redaction guard every log line passes: card numbers and bearer tokens are masked."""

from __future__ import annotations

import asyncio

import pytest
import structlog
from payment_gateway.logging_setup import current_request_id, redact_text, request_context


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


def test_redaction_guard_leaves_ids_whole() -> None:
    # Its last 17 digits, across the hyphens, are a Luhn-valid number.
    payment_id = "01a2534b-75ba-74d4-2424-242424200002"
    line = f"payment_id={payment_id} card 4242424242424242"
    assert redact_text(line) == f"payment_id={payment_id} card [PAN ****4242]"


async def test_a_request_context_names_the_request_to_its_tasks_and_log_lines() -> None:
    assert current_request_id() is None
    with request_context("req-1", "203.0.113.9"):
        assert current_request_id() == "req-1"
        bound = structlog.contextvars.get_contextvars()
        assert bound == {"request_id": "req-1", "client_address": "203.0.113.9"}
        # A task started by the request (a write handed to the group commit, say) sees it.
        assert await asyncio.create_task(_request_id_in_a_task()) == "req-1"
    assert current_request_id() is None
    assert structlog.contextvars.get_contextvars() == {}


async def _request_id_in_a_task() -> str | None:
    return current_request_id()
