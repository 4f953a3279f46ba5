"""The hosted page's form reading, CSRF token, amounts and headers."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from payment_gateway.api.checkout_form import read_card_form
from payment_gateway.api.checkout_page import csrf_token, format_amount
from payment_gateway.api.html_pages import security_headers

NOW = datetime(2030, 6, 15, tzinfo=UTC)
FORM = {
    "card_number": "4242 4242 4242 4242",
    "card_expiry": "12 / 34",
    "card_cvc": "123",
    "card_name": "Ada Lovelace",
}


@pytest.mark.parametrize(
    ("expiry", "month", "year"),
    [("12 / 34", 12, 2034), ("12/34", 12, 2034), ("1234", 12, 2034), ("7/2031", 7, 2031)],
)
def test_a_valid_card(expiry: str, month: int, year: int) -> None:
    form = read_card_form({**FORM, "card_expiry": expiry}, NOW)
    assert form.errors == {}
    assert form.card is not None
    assert (form.card.pan, form.card.cvv) == ("4242424242424242", "123")
    assert (form.card.expiry_month, form.card.expiry_year) == (month, year)
    assert form.card.holder_name == "Ada Lovelace"


def test_the_name_is_optional() -> None:
    form = read_card_form({**FORM, "card_name": "  "}, NOW)
    assert form.card is not None
    assert form.card.holder_name is None


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("card_number", "", "Enter your card number."),
        ("card_number", "4242424242424241", "Enter a valid card number: check the digits."),
        ("card_number", "4242abcd", "Enter a valid card number: check the digits."),
        ("card_expiry", "", "Enter the expiry date, as MM / YY."),
        ("card_expiry", "13/34", "Enter the expiry date as MM / YY, for example 12 / 34."),
        ("card_expiry", "5/30", "This card has expired: use another card."),
        ("card_cvc", "12", "Enter the 3 or 4 digit security code from your card."),
        ("card_name", "A" * 101, "Enter at most 100 characters."),
        ("card_name", "Ada\u202eLovelace", "without special characters"),
    ],
)
def test_each_error_is_kept_by_its_field(field: str, value: str, message: str) -> None:
    form = read_card_form({**FORM, field: value}, NOW)
    assert form.card is None
    assert list(form.errors) == [field]
    assert message in form.errors[field]


def test_an_error_never_echoes_the_card() -> None:
    form = read_card_form({**FORM, "card_cvc": "x"}, NOW)
    assert (form.name, form.expiry) == ("Ada Lovelace", "12 / 34")
    assert "4242" not in repr(form)


def test_the_csrf_token_is_bound_to_the_session_and_the_key() -> None:
    token = csrf_token(b"key", "cs_1")
    assert token == csrf_token(b"key", "cs_1")
    assert token != csrf_token(b"key", "cs_2")
    assert token != csrf_token(b"other key", "cs_1")
    assert len(token) == 43  # 32 bytes, base64url without padding


@pytest.mark.parametrize(
    ("amount", "currency", "shown"),
    [
        (1999, "EUR", "€19.99"),
        (1999, "USD", "$19.99"),
        (1999, "JPY", "¥1,999"),
        (1999, "KWD", "KWD1.999"),
    ],
)
def test_amounts_are_formatted_for_their_currency(amount: int, currency: str, shown: str) -> None:
    assert format_amount(amount, currency).replace("\xa0", " ") == shown


def test_the_csp_allows_the_nonce_and_the_form_origins_only() -> None:
    headers = security_headers("abc", ("https://bank.example", "https://shop.example", "'self'"))
    policy = headers["Content-Security-Policy"]
    assert "script-src 'nonce-abc';" in policy
    assert "style-src 'nonce-abc';" in policy
    assert "form-action 'self' https://bank.example https://shop.example;" in policy
    assert "frame-ancestors 'none'" in policy
    assert headers["Referrer-Policy"] == "no-referrer"
