"""Card rules: Luhn, number problems, brand detection, masking and expiry."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from payment_gateway.domain.card import (
    BIDI_CONTROLS,
    CardSummary,
    card_brand,
    contains_card_number,
    has_unsafe_characters,
    is_expired,
    luhn_valid,
    mask_last4,
    normalize_pan,
    pan_problem,
)


def check_digit(payload: str) -> str:
    """The Luhn check digit for ``payload``, computed independently of the code under test.

    Appending the check digit shifts every payload digit one place left, so the payload's
    rightmost digit is the first one doubled.
    """
    doubled_digit_sum = [0, 2, 4, 6, 8, 1, 3, 5, 7, 9]  # digit sum of 2*d for d in 0..9
    total = 0
    for position, char in enumerate(payload[::-1]):
        d = int(char)
        total += doubled_digit_sum[d] if position % 2 == 0 else d
    return str((10 - total % 10) % 10)


digit_strings = st.text(alphabet="0123456789", min_size=1, max_size=30)


@pytest.mark.parametrize(
    "pan",
    [
        "4242424242424242",
        "4000000000000002",
        "4000000000009995",
        "5555555555554444",
        "378282246310005",
        "6011111111111117",
        "30569309025904",
        "0",
        "00",
    ],
)
def test_luhn_accepts_valid_numbers(pan: str) -> None:
    assert luhn_valid(pan)


@pytest.mark.parametrize(
    "pan",
    ["4242424242424241", "4242424242424243", "1234567812345678", "79927398710", "", "4242 4242"],
)
def test_luhn_rejects_invalid_numbers(pan: str) -> None:
    assert not luhn_valid(pan)


def test_luhn_known_reference_value() -> None:
    assert luhn_valid("79927398713")
    assert check_digit("7992739871") == "3"


@given(digit_strings)
def test_appending_the_check_digit_makes_any_digit_string_valid(payload: str) -> None:
    assert luhn_valid(payload + check_digit(payload))


@given(digit_strings, st.integers(min_value=1, max_value=9))
def test_any_other_final_digit_fails_luhn(payload: str, shift: int) -> None:
    wrong = str((int(check_digit(payload)) + shift) % 10)
    assert not luhn_valid(payload + wrong)


@given(digit_strings, st.data())
def test_luhn_detects_every_single_digit_error(payload: str, data: st.DataObject) -> None:
    valid = payload + check_digit(payload)
    index = data.draw(st.integers(min_value=0, max_value=len(valid) - 1))
    replacement = data.draw(st.sampled_from([d for d in "0123456789" if d != valid[index]]))
    assert not luhn_valid(valid[:index] + replacement + valid[index + 1 :])


def test_normalize_pan_strips_spaces_only() -> None:
    assert normalize_pan("4242 4242 4242 4242") == "4242424242424242"
    assert normalize_pan("4242-4242") == "4242-4242"


@pytest.mark.parametrize("pan", ["4242a42424242424", "4242-4242-4242-4242", "", "\uff14\uff12" * 6])
def test_pan_problem_non_digits(pan: str) -> None:
    problem = pan_problem(pan)
    assert problem is not None
    assert "digits" in problem


@pytest.mark.parametrize("length", [2, 11, 20, 25])
def test_pan_problem_wrong_length(length: int) -> None:
    payload = "4" + "0" * (length - 2)
    pan = payload + check_digit(payload)  # Luhn-valid, so only the length is wrong
    assert len(pan) == length
    assert luhn_valid(pan)
    problem = pan_problem(pan)
    assert problem is not None
    assert "12 to 19" in problem


@pytest.mark.parametrize("length", [12, 13, 16, 19])
def test_pan_problem_accepts_boundary_lengths(length: int) -> None:
    payload = "4" + "0" * (length - 2)
    pan = payload + check_digit(payload)
    assert pan_problem(pan) is None


def test_pan_problem_luhn_failure() -> None:
    problem = pan_problem("4242424242424241")
    assert problem is not None
    assert "Luhn" in problem


@pytest.mark.parametrize(
    ("pan", "brand"),
    [
        ("4242424242424242", "visa"),
        ("4000000000000002", "visa"),
        ("5105105105105100", "mastercard"),
        ("5555555555554444", "mastercard"),
        ("2221000000000009", "mastercard"),
        ("2720990000000000", "mastercard"),
        ("378282246310005", "amex"),
        ("341111111111111", "amex"),
        ("6011111111111117", "discover"),
        ("6500000000000002", "discover"),
        ("6440000000000000", "discover"),
        ("3530111333300000", "jcb"),
        ("3589000000000000", "jcb"),
        ("30569309025904", "diners"),
        ("36227206271667", "diners"),
        ("38520000023237", "diners"),
        ("9999999999999995", "unknown"),
        ("1000000000000008", "unknown"),
    ],
)
def test_card_brand(pan: str, brand: str) -> None:
    assert card_brand(pan) == brand


@pytest.mark.parametrize("pan", ["2220990000000000", "2721000000000000", "5000000000000009"])
def test_card_brand_outside_mastercard_ranges(pan: str) -> None:
    assert card_brand(pan) != "mastercard"


@pytest.mark.parametrize("last4", ["4242", "0005", "1117"])
def test_mask_last4(last4: str) -> None:
    assert mask_last4(last4) == f"**** **** **** {last4}"


def test_card_summary_masks_whatever_the_length() -> None:
    summary = CardSummary(last4="0005", brand="amex", expiry_month=1, expiry_year=2042)
    assert summary.masked_number == "**** **** **** 0005"


@pytest.mark.parametrize(
    ("month", "year", "now", "expired"),
    [
        # The current month is still valid, up to its last moment.
        (6, 2030, datetime(2030, 6, 1, 0, 0, tzinfo=UTC), False),
        (6, 2030, datetime(2030, 6, 30, 23, 59, 59, 999999, tzinfo=UTC), False),
        (5, 2030, datetime(2030, 6, 1, 0, 0, tzinfo=UTC), True),
        (6, 2030, datetime(2030, 7, 1, 0, 0, tzinfo=UTC), True),
        # December -> January: last year's December has expired, this January has not.
        (12, 2029, datetime(2030, 1, 1, 0, 0, tzinfo=UTC), True),
        (1, 2030, datetime(2030, 1, 15, tzinfo=UTC), False),
        (12, 2030, datetime(2030, 1, 15, tzinfo=UTC), False),
        (1, 2031, datetime(2030, 12, 31, 23, 59, tzinfo=UTC), False),
        (12, 2030, datetime(2030, 12, 31, 23, 59, tzinfo=UTC), False),
        (12, 2030, datetime(2031, 1, 1, 0, 0, tzinfo=UTC), True),
        (1, 2031, datetime(2030, 6, 1, tzinfo=UTC), False),
        (7, 2029, datetime(2030, 6, 1, tzinfo=UTC), True),
    ],
)
def test_is_expired(month: int, year: int, now: datetime, expired: bool) -> None:
    assert is_expired(month, year, now) is expired


# --- free text: card numbers and unsafe characters --------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "4242424242424242",
        "4242 4242 4242 4242",
        "4242-4242-4242-4242",
        "order 4000-0000-0000-0002 paid",
        "4222222222222",  # 13 digits
        "6011000990139424",
        "4" + "0" * 17 + "6",  # 19 digits (the Luhn check digit for 4 followed by 17 zeros)
        "ref:378282246310005",  # 15-digit amex
    ],
)
def test_a_card_number_in_free_text_is_found(text: str) -> None:
    assert contains_card_number(text)


@pytest.mark.parametrize(
    "text",
    [
        "order-1234",
        "4242424242424241",  # fails the Luhn check
        "424242424242",  # 12 digits: too short to be what a merchant would paste
        "42424242424242424242",  # 20 digits: longer than any card number
        "2026-11-25 12:00",
        "4242  4242 4242 4242",  # two spaces break the run
        "",
    ],
)
def test_free_text_without_a_card_number_passes(text: str) -> None:
    assert not contains_card_number(text)


@given(st.text(alphabet="0123456789", min_size=13, max_size=19))
def test_any_luhn_valid_run_is_found_whatever_the_separators(digits: str) -> None:
    spaced = " ".join(digits[i : i + 4] for i in range(0, len(digits), 4))
    assert contains_card_number(f"x{spaced}x") == luhn_valid(digits)


@pytest.mark.parametrize(
    "char", ["\x00", "\x1b", "\r", "\n", "\t", "\x7f", "\x85", *sorted(BIDI_CONTROLS)]
)
def test_control_and_bidi_characters_are_unsafe(char: str) -> None:
    assert has_unsafe_characters(f"John{char}Doe")


def test_the_bidi_set_is_the_documented_one() -> None:
    expected = {0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)}
    assert {ord(char) for char in BIDI_CONTROLS} == expected


@pytest.mark.parametrize("text", ["John Doe", "Zoë Ångström", "محمد", "O'Brien-Smith", ""])
def test_ordinary_names_are_safe(text: str) -> None:
    assert not has_unsafe_characters(text)
