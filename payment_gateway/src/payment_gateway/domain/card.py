"""Card rules: number checks, brand detection, expiry and masking."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime

PAN_MIN_LENGTH = 12
PAN_MAX_LENGTH = 19
_DIGITS = re.compile(r"[0-9]+")
# A run of digits, single spaces or dashes allowed between them: how people write a card number.
_DIGIT_RUN = re.compile(r"[0-9](?:[ -]?[0-9])*")
_DIGIT_SEPARATORS = str.maketrans("", "", " -")
EMBEDDED_PAN_MIN_LENGTH = 13
# Bidirectional formatting characters: they reorder how text is displayed, so a name or
# reference could show an operator something other than what is stored (Trojan Source).
BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)


def normalize_pan(raw: str) -> str:
    """Strip the spaces people type between digit groups."""
    return raw.replace(" ", "")


def luhn_valid(pan: str) -> bool:
    if not _DIGITS.fullmatch(pan):
        return False
    total = 0
    for index, char in enumerate(reversed(pan)):
        digit = ord(char) - 48
        if index % 2 == 1:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def pan_problem(pan: str) -> str | None:
    """Why a (normalized) card number is unacceptable, or None when it is fine."""
    if not _DIGITS.fullmatch(pan):
        return "must contain only digits (spaces are allowed between groups)"
    if not PAN_MIN_LENGTH <= len(pan) <= PAN_MAX_LENGTH:
        return f"must be {PAN_MIN_LENGTH} to {PAN_MAX_LENGTH} digits long"
    if not luhn_valid(pan):
        return "is not a valid card number (Luhn check failed)"
    return None


def contains_card_number(text: str) -> bool:
    """Whether ``text`` holds a Luhn-valid run of 13 to 19 digits (spaces or dashes between).

    Free text is stored in clear, so a card number in it would be a PAN at rest. A run of
    exactly 13 to 19 digits is tested as a whole; an order number that happens to pass the
    Luhn check (one in ten) is refused too, which is the price of never storing a PAN.
    """
    for match in _DIGIT_RUN.finditer(text):
        digits = match.group().translate(_DIGIT_SEPARATORS)
        if EMBEDDED_PAN_MIN_LENGTH <= len(digits) <= PAN_MAX_LENGTH and luhn_valid(digits):
            return True
    return False


def has_unsafe_characters(text: str) -> bool:
    """Control characters (NUL, ESC, CR, LF, tab, ...) or bidirectional formatting ones.

    They could forge log lines, drive a terminal, or make a stored value display as another.
    """
    return any(char in BIDI_CONTROLS or unicodedata.category(char) == "Cc" for char in text)


def card_brand(pan: str) -> str:
    """Best-effort network detection from the BIN, for display only."""
    two, four, six = int(pan[:2]), int(pan[:4]), int(pan[:6])
    if pan.startswith("4"):
        return "visa"
    if 51 <= two <= 55 or 222100 <= six <= 272099:
        return "mastercard"
    if two in (34, 37):
        return "amex"
    if pan.startswith(("6011", "65")) or 644 <= int(pan[:3]) <= 649 or 622126 <= six <= 622925:
        return "discover"
    if 3528 <= four <= 3589:
        return "jcb"
    if two in (36, 38, 39) or 300 <= int(pan[:3]) <= 305:
        return "diners"
    if two == 62:
        return "unionpay"
    if two in (50, 56, 57, 58, 67) or pan.startswith("6"):
        return "maestro"
    return "unknown"


def mask_last4(last4: str) -> str:
    # The original clients expect exactly this shape, whatever the card length.
    return f"**** **** **** {last4}"


def is_expired(expiry_month: int, expiry_year: int, now: datetime) -> bool:
    """A card is valid through the last moment of its expiry month (UTC)."""
    return (expiry_year, expiry_month) < (now.year, now.month)


@dataclass(frozen=True, slots=True)
class CardSummary:
    """What may be shown about a card: never the full number."""

    last4: str
    brand: str
    expiry_month: int
    expiry_year: int

    @property
    def masked_number(self) -> str:
        return mask_last4(self.last4)
