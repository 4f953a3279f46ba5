"""Money rules: currency codes from the ISO 4217 package, the amount bound."""

from __future__ import annotations

import pytest
from payment_gateway.domain.money import (
    ACTIVE_CURRENCIES,
    MAX_AMOUNT,
    parse_currency,
)


@pytest.mark.parametrize(
    ("raw", "code"),
    [("USD", "USD"), ("usd", "USD"), ("Eur", "EUR"), ("jpy", "JPY"), ("gbP", "GBP")],
)
def test_parse_currency_is_case_insensitive(raw: str, code: str) -> None:
    assert parse_currency(raw) == code


@pytest.mark.parametrize(
    "raw",
    ["XTS", "xxx", "XXX", "XAU", "XDR", "ZZZ", "ABC", "", "US", "USDD", "   ", "U$D", "123"],
)
def test_parse_currency_rejects_non_payment_codes(raw: str) -> None:
    assert parse_currency(raw) is None


def test_active_currencies_come_from_the_iso_package() -> None:
    assert {"USD", "EUR", "GBP", "JPY", "CHF", "BHD"} <= ACTIVE_CURRENCIES
    assert not ACTIVE_CURRENCIES & {"XTS", "XXX", "XAU", "XAG"}
    assert all(len(code) == 3 and code.isupper() for code in ACTIVE_CURRENCIES)


def test_max_amount_fits_a_signed_64_bit_column() -> None:
    assert MAX_AMOUNT == 2**63 - 1
