"""PaymentCreate validation, with field names as the API reports them.

The rules: docs/design.md, The payment flow.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from payment_gateway.api.problems import field_errors, invalid_request
from payment_gateway.api.schemas import PaymentCreate
from payment_gateway.domain.payment import PaymentRequest
from pydantic import ValidationError

VALID: dict[str, Any] = {
    "card": {
        "number": "4242424242424242",
        "expiry_month": 12,
        "expiry_year": 2042,
        "cvv": "123",
        "holder_name": "John Doe",
    },
    "amount": 1000,
    "currency": "USD",
    "reference": "order-1234",
}
MISSING = object()


def payload(**changes: Any) -> bytes:
    """VALID with changes: ``card__cvv="1"`` sets card.cvv; MISSING removes the field."""
    body = copy.deepcopy(VALID)
    for dotted, value in changes.items():
        *parents, name = dotted.split("__")
        target = body
        for parent in parents:
            target = target[parent]
        if value is MISSING:
            target.pop(name, None)
        else:
            target[name] = value
    return json.dumps(body).encode()


def parse(raw: bytes) -> PaymentCreate:
    return PaymentCreate.model_validate_json(raw)


def error_fields(raw: bytes) -> list[str]:
    with pytest.raises(ValidationError) as info:
        parse(raw)
    return [e.field for e in field_errors(info.value.errors(include_input=False))]


def rejected_on(raw: bytes, field: str) -> None:
    fields = error_fields(raw)
    assert fields == [field], fields


def this_month() -> tuple[int, int]:
    now = datetime.now(UTC)
    return now.month, now.year


def last_month() -> tuple[int, int]:
    month, year = this_month()
    return (12, year - 1) if month == 1 else (month - 1, year)


def test_valid_payload_becomes_a_domain_request() -> None:
    request = parse(payload()).to_domain()
    assert request == PaymentRequest(
        pan="4242424242424242",
        cvv="123",
        expiry_month=12,
        expiry_year=2042,
        holder_name="John Doe",
        amount=1000,
        currency="USD",
        reference="order-1234",
    )


# --- card.number -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "number", ["4242 4242 4242 4242", " 4242424242424242 ", "42 42424242424242"]
)
def test_number_with_spaces_is_accepted_and_normalized(number: str) -> None:
    assert parse(payload(card__number=number)).card.number == "4242424242424242"


@pytest.mark.parametrize(
    "number",
    [
        "4242424242424241",  # Luhn fails
        "4242a42424242424",  # letters
        "4242-4242-4242-4242",
        "42424242420",  # 11 digits, Luhn-valid
        "42424242424242424242",  # 20 digits
        "            ",  # spaces only
        "",
        "\uff14\uff12" * 8,  # full-width digits
    ],
)
def test_number_rejected(number: str) -> None:
    rejected_on(payload(card__number=number), "card.number")


def test_number_boundaries_12_and_19_accepted() -> None:
    assert parse(payload(card__number="424242424242")).card.number == "424242424242"
    assert parse(payload(card__number="4242424242424242428")).card.number == "4242424242424242428"


@pytest.mark.parametrize("number", [4242424242424242, None, ["4242424242424242"]])
def test_number_must_be_a_json_string(number: Any) -> None:
    rejected_on(payload(card__number=number), "card.number")


def test_number_missing() -> None:
    rejected_on(payload(card__number=MISSING), "card.number")


def test_luhn_valid_lengths_used_above_are_what_they_claim() -> None:
    from payment_gateway.domain.card import luhn_valid

    assert luhn_valid("42424242420")
    assert luhn_valid("42424242424242424242")
    assert luhn_valid("424242424242")
    assert luhn_valid("4242424242424242428")


# --- card.expiry_month / card.expiry_year --------------------------------------------------


@pytest.mark.parametrize("month", [0, 13, -1, "0", "13", True, False, 12.0, "twelve", "", None])
def test_expiry_month_rejected(month: Any) -> None:
    rejected_on(payload(card__expiry_month=month), "card.expiry_month")


@pytest.mark.parametrize(("month", "expected"), [(1, 1), (12, 12), ("12", 12), ("01", 1), ("7", 7)])
def test_expiry_month_accepted(month: Any, expected: int) -> None:
    assert parse(payload(card__expiry_month=month)).card.expiry_month == expected


@pytest.mark.parametrize("year", [204, "204", 20420, "20420", True, 2042.0, "", None])
def test_expiry_year_rejected(year: Any) -> None:
    rejected_on(payload(card__expiry_year=year), "card.expiry_year")


@pytest.mark.parametrize(("year", "expected"), [(2042, 2042), ("2042", 2042), (9999, 9999)])
def test_expiry_year_accepted(year: Any, expected: int) -> None:
    assert parse(payload(card__expiry_year=year)).card.expiry_year == expected


@pytest.mark.parametrize("month", ["\u0661\u0662", "\u00b2", "1\u00b2"])
def test_expiry_month_non_ascii_digits_rejected_without_echo(month: str) -> None:
    """The published schema says ``^[0-9]{1,2}$``; Unicode digits are not that.

    Also, ``field_errors`` promises never to echo the input: the message must be the
    schema's own, not Python's ``int()`` error quoting what the client sent.
    """
    with pytest.raises(ValidationError) as info:
        parse(payload(card__expiry_month=month))
    errors = field_errors(info.value.errors(include_input=False))
    assert [e.field for e in errors] == ["card.expiry_month"]
    assert month not in errors[0].message


def test_expired_card_names_year_and_month() -> None:
    month, year = last_month()
    fields = error_fields(payload(card__expiry_month=month, card__expiry_year=year))
    assert sorted(fields) == ["card.expiry_month", "card.expiry_year"]


def test_expired_card_as_strings() -> None:
    month, year = last_month()
    fields = error_fields(payload(card__expiry_month=str(month), card__expiry_year=str(year)))
    assert sorted(fields) == ["card.expiry_month", "card.expiry_year"]


def test_card_expired_last_year() -> None:
    _, year = this_month()
    fields = error_fields(payload(card__expiry_month=12, card__expiry_year=year - 1))
    assert sorted(fields) == ["card.expiry_month", "card.expiry_year"]


def test_current_month_is_accepted() -> None:
    month, year = this_month()
    card = parse(payload(card__expiry_month=month, card__expiry_year=year)).card
    assert (card.expiry_month, card.expiry_year) == (month, year)


def test_expired_card_problem_message_names_both_fields() -> None:
    month, year = last_month()
    with pytest.raises(ValidationError) as info:
        parse(payload(card__expiry_month=month, card__expiry_year=year))
    problem = invalid_request(info.value)
    assert problem.status_code == 422
    assert {e.field for e in problem.errors} == {"card.expiry_month", "card.expiry_year"}
    assert all("expired" in e.message for e in problem.errors)


# --- card.cvv ------------------------------------------------------------------------------


@pytest.mark.parametrize("cvv", ["12", "12345", 123, 1234, "12a", "", " 123", "123\n", None])
def test_cvv_rejected(cvv: Any) -> None:
    rejected_on(payload(card__cvv=cvv), "card.cvv")


@pytest.mark.parametrize("cvv", ["123", "1234", "000"])
def test_cvv_accepted(cvv: str) -> None:
    assert parse(payload(card__cvv=cvv)).card.cvv == cvv


# --- card.holder_name ----------------------------------------------------------------------


def test_holder_name_too_long() -> None:
    rejected_on(payload(card__holder_name="x" * 101), "card.holder_name")


@pytest.mark.parametrize("name", [123, ["John"]])
def test_holder_name_must_be_a_string(name: Any) -> None:
    rejected_on(payload(card__holder_name=name), "card.holder_name")


@pytest.mark.parametrize("name", ["x" * 100, "Zoë Ångström", None])
def test_holder_name_accepted(name: str | None) -> None:
    assert parse(payload(card__holder_name=name)).card.holder_name == name


UNSAFE = ["\x00", "\x1b[2J", "a\r\nb", "\t", "\u202e", "\u2066", "\u200f", "\u061c"]


@pytest.mark.parametrize("unsafe", UNSAFE)
def test_holder_name_with_control_or_bidi_characters_rejected(unsafe: str) -> None:
    rejected_on(payload(card__holder_name=f"John{unsafe}Doe"), "card.holder_name")


def test_holder_name_absent_is_ok() -> None:
    assert parse(payload(card__holder_name=MISSING)).card.holder_name is None


# --- amount --------------------------------------------------------------------------------


@pytest.mark.parametrize("amount", ["1000", 1000.0, True, False, 0, -1, 2**63, 2**64, None])
def test_amount_rejected(amount: Any) -> None:
    rejected_on(payload(amount=amount), "amount")


@pytest.mark.parametrize("amount", [1, 1000, 2**63 - 1])
def test_amount_accepted(amount: int) -> None:
    assert parse(payload(amount=amount)).amount == amount


def test_amount_missing() -> None:
    rejected_on(payload(amount=MISSING), "amount")


# --- currency ------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "code"), [("usd", "USD"), ("USD", "USD"), ("eUr", "EUR")])
def test_currency_accepted_upper_cased(raw: str, code: str) -> None:
    assert parse(payload(currency=raw)).currency == code


@pytest.mark.parametrize("currency", ["ZZZ", "US", "USDX", "XTS", "XXX", "", 123, None])
def test_currency_rejected(currency: Any) -> None:
    rejected_on(payload(currency=currency), "currency")


# --- reference -----------------------------------------------------------------------------


def test_reference_too_long() -> None:
    rejected_on(payload(reference="r" * 65), "reference")


@pytest.mark.parametrize("reference", ["r" * 64, "", None])
def test_reference_accepted(reference: str | None) -> None:
    assert parse(payload(reference=reference)).reference == reference


@pytest.mark.parametrize(
    "reference", ["4242424242424242", "order 4242 4242 4242 4242", "4000-0000-0000-0002"]
)
def test_reference_holding_a_card_number_rejected(reference: str) -> None:
    rejected_on(payload(reference=reference), "reference")


@pytest.mark.parametrize("unsafe", UNSAFE)
def test_reference_with_control_or_bidi_characters_rejected(unsafe: str) -> None:
    rejected_on(payload(reference=f"order{unsafe}1"), "reference")


@pytest.mark.parametrize("reference", ["4242424242424241", "order-2026-11-25-0001"])
def test_reference_with_digits_that_are_no_card_number_accepted(reference: str) -> None:
    assert parse(payload(reference=reference)).reference == reference


def test_reference_absent_is_ok() -> None:
    assert parse(payload(reference=MISSING)).reference is None


def test_reference_must_be_a_string() -> None:
    rejected_on(payload(reference=1234), "reference")


# --- structure -----------------------------------------------------------------------------


def test_unknown_card_field() -> None:
    rejected_on(payload(card__foo="bar"), "card.foo")


def test_unknown_top_level_field() -> None:
    rejected_on(payload(foo="bar"), "foo")


@pytest.mark.parametrize("raw", [b"{", b"", b"not json", b'{"card": }', b"\xff\xfe"])
def test_malformed_json_names_the_body(raw: bytes) -> None:
    with pytest.raises(ValidationError) as info:
        parse(raw)
    errors = field_errors(info.value.errors(include_input=False))
    assert [(e.field, e.message) for e in errors] == [("body", "is not valid JSON")]


@pytest.mark.parametrize("raw", [b"[]", b"null", b"1000", b'"payment"'])
def test_non_object_json_names_the_body(raw: bytes) -> None:
    assert error_fields(raw) == ["body"]


def test_missing_card() -> None:
    rejected_on(payload(card=MISSING), "card")


def test_several_problems_are_all_reported() -> None:
    fields = error_fields(payload(card__cvv="1", amount=0, currency="ZZZ"))
    assert sorted(fields) == ["amount", "card.cvv", "currency"]


def test_errors_never_echo_the_card_number_or_cvv() -> None:
    raw = payload(card__number="4242424242424241", card__cvv="98765")
    with pytest.raises(ValidationError) as info:
        parse(raw)
    rendered = repr(invalid_request(info.value).errors)
    assert "4242424242424241" not in rendered
    assert "98765" not in rendered


def test_model_repr_never_shows_pan_or_cvv() -> None:
    """A validated body must be as safe to log as the domain request it becomes.

    ``PaymentRequest`` hides the PAN and CVV from its repr; the API model holding the very
    same data should too (docs/design.md, Security: no PAN or CVV in logs).
    """
    model = parse(payload(card__cvv="987"))
    for text in (repr(model), str(model), repr(model.card)):
        assert "4242424242424242" not in text
        assert "987" not in text


@pytest.mark.parametrize("literal", [b"1e3", b"1000.0", b"1.5", b"1E3"])
def test_amount_as_a_json_number_that_is_not_an_integer(literal: bytes) -> None:
    raw = payload(amount="@").replace(b'"@"', literal)
    rejected_on(raw, "amount")
