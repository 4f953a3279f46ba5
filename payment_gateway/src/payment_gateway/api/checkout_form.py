"""The hosted page's card form: its fields read into a CardEntry, or an error per field.

The messages are for shoppers, and none of them repeats what was typed: the card number and
security code never come back in a page (docs/design.md, Hosted payment page).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from payment_gateway.domain.card import (
    has_unsafe_characters,
    is_expired,
    normalize_pan,
    pan_problem,
)
from payment_gateway.domain.checkout import CardEntry

NUMBER, EXPIRY, CVC, NAME = "card_number", "card_expiry", "card_cvc", "card_name"
MAX_NAME_LENGTH = 100
_EXPIRY = re.compile(r"\s*([0-9]{1,2})\s*[/\-. ]?\s*([0-9]{2}|[0-9]{4})\s*", re.ASCII)
_CVC = re.compile(r"[0-9]{3,4}", re.ASCII)


@dataclass(frozen=True, slots=True)
class CardForm:
    """What a post of the form gave: a card, or the errors to show by each field."""

    card: CardEntry | None
    errors: dict[str, str] = field(default_factory=dict)
    # Shown again in the form after an error: only what is safe to echo.
    name: str = ""
    expiry: str = ""


def _text(form: Mapping[str, object], name: str, limit: int = 64) -> str:
    value = form.get(name)
    return value.strip()[:limit] if isinstance(value, str) else ""


def read_card_form(form: Mapping[str, object], now: datetime) -> CardForm:
    errors: dict[str, str] = {}
    pan = normalize_pan(_text(form, NUMBER).replace("-", " "))
    if not pan:
        errors[NUMBER] = "Enter your card number."
    elif pan_problem(pan):
        errors[NUMBER] = "Enter a valid card number: check the digits."
    expiry_text = _text(form, EXPIRY, 16)
    month = year = 0
    match = _EXPIRY.fullmatch(expiry_text)
    if not expiry_text:
        errors[EXPIRY] = "Enter the expiry date, as MM / YY."
    elif match is None or not 1 <= int(match.group(1)) <= 12:
        errors[EXPIRY] = "Enter the expiry date as MM / YY, for example 12 / 34."
    else:
        month, year = int(match.group(1)), int(match.group(2))
        year += 2000 if year < 100 else 0
        if is_expired(month, year, now):
            errors[EXPIRY] = "This card has expired: use another card."
    cvc = _text(form, CVC, 8)
    if not _CVC.fullmatch(cvc):
        errors[CVC] = "Enter the 3 or 4 digit security code from your card."
    raw_name = form.get(NAME)
    name = raw_name.strip() if isinstance(raw_name, str) else ""
    if len(name) > MAX_NAME_LENGTH:
        errors[NAME] = f"Enter at most {MAX_NAME_LENGTH} characters."
    elif has_unsafe_characters(name):
        errors[NAME] = "Enter the name as printed on the card, without special characters."
    safe_name = name[:MAX_NAME_LENGTH] if NAME not in errors else ""
    safe_expiry = expiry_text if match is not None else ""
    if errors:
        return CardForm(None, errors, safe_name, safe_expiry)
    card = CardEntry(
        pan=pan, cvv=cvc, expiry_month=month, expiry_year=year, holder_name=name or None
    )
    return CardForm(card, {}, safe_name, safe_expiry)
