"""Money rules: amounts in minor units, currencies from the ISO 4217 data package."""

from __future__ import annotations

from iso4217 import Currency

MAX_AMOUNT = 2**63 - 1  # fits a signed 64-bit column

# Fund, precious-metal and testing codes are ISO 4217 entries but not card currencies.
_NOT_FOR_PAYMENTS = frozenset(
    {
        "XAG",
        "XAU",
        "XBA",
        "XBB",
        "XBC",
        "XBD",
        "XDR",
        "XPD",
        "XPT",
        "XSU",
        "XTS",
        "XUA",
        "XXX",
        "BOV",
        "CHE",
        "CHW",
        "CLF",
        "COU",
        "MXV",
        "USN",
        "UYI",
        "UYW",
    }
)
ACTIVE_CURRENCIES: frozenset[str] = frozenset(
    currency.code for currency in Currency if currency.code not in _NOT_FOR_PAYMENTS
)


def parse_currency(raw: str) -> str | None:
    """The upper-case ISO 4217 code for ``raw`` (any case), or None if it is not one."""
    code = raw.strip().upper()
    return code if code in ACTIVE_CURRENCIES else None
