"""Free text is stored in clear: no card number in it, no control or bidi characters."""

from __future__ import annotations

import pytest

from .conftest import MERCHANT_ONE, Gateway, payment_body
from .test_payments_api import count_payments


def card_body(**overrides: object) -> dict[str, object]:
    """payment_body's card, with `overrides` applied."""
    card = payment_body()["card"]
    assert isinstance(card, dict)
    return {**card, **overrides}


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"reference": "card 4000-0000-0000-0002"}, "reference"),
        ({"reference": "order\x1b[2J"}, "reference"),
        ({"reference": "order\u202e1"}, "reference"),
        ({"card": card_body(holder_name="John\r\nDoe")}, "card.holder_name"),
        ({"card": card_body(holder_name="John\x00")}, "card.holder_name"),
    ],
)
async def test_unsafe_free_text_is_refused_naming_the_field(
    gateway: Gateway, overrides: dict[str, object], field: str
) -> None:
    before = await count_payments(gateway)  # the MariaDB database is shared by the session
    response = await gateway.client.post(
        "/api/v1/payments", json=payment_body(**overrides), headers=MERCHANT_ONE
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert [error["field"] for error in response.json()["errors"]] == [field]
    assert "4000" not in response.text  # the refused value is not echoed
    assert await count_payments(gateway) == before
    assert gateway.bank.deposits == []
