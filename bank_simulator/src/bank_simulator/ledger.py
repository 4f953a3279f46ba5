"""In-memory, bounded store of deposits keyed by the caller's reference.

The store is used from the event loop only and none of its methods await, so a
check-and-insert (:meth:`Ledger.record`) is atomic with respect to concurrent requests.
No card number or CVV is kept: only a keyed SHA-256 fingerprint of the number, which is
all the duplicate/conflict comparison needs.
"""

from __future__ import annotations

import hmac
import secrets
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from bank_simulator.cards import SUCCEEDED, Outcome, Status, outcome_for

Clock = Callable[[], float]

# Per-process key: fingerprints are only compared within this process, and a keyed hash
# cannot be reversed by enumerating the (small) space of card numbers.
_FINGERPRINT_KEY = secrets.token_bytes(32)


def card_fingerprint(card_number: str) -> bytes:
    """HMAC-SHA-256 of the card number under a per-process random key."""
    return hmac.digest(_FINGERPRINT_KEY, card_number.encode("ascii"), "sha256")


@dataclass(slots=True, frozen=True)
class Transaction:
    transaction_id: str
    reference: str
    card_fingerprint: bytes
    amount: int
    currency: str
    outcome: Outcome
    created_at: float  # on the ledger's (monotonic) clock

    def matches(self, card_fingerprint: bytes, amount: int, currency: str) -> bool:
        return (
            hmac.compare_digest(self.card_fingerprint, card_fingerprint)
            and self.amount == amount
            and self.currency == currency
        )

    def outcome_at(self, now: float, settle_seconds: float) -> Outcome:
        """The outcome as it stands at ``now``: a pending deposit settles after a delay."""
        if self.outcome.status is Status.PENDING and now - self.created_at >= settle_seconds:
            return SUCCEEDED
        return self.outcome


class RecordResult(Enum):
    CREATED = "created"
    REPLAYED = "replayed"
    CONFLICT = "conflict"


class Ledger:
    def __init__(
        self,
        max_transactions: int,
        settle_seconds: float,
        clock: Clock = time.monotonic,
    ) -> None:
        if max_transactions < 1:
            raise ValueError("max_transactions must be at least 1")
        self._items: OrderedDict[str, Transaction] = OrderedDict()
        self._max = max_transactions
        self._settle_seconds = settle_seconds
        self._clock = clock

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, reference: object) -> bool:
        return reference in self._items

    def get(self, reference: str) -> Transaction | None:
        return self._items.get(reference)

    def record(
        self, reference: str, card_number: str, amount: int, currency: str
    ) -> tuple[RecordResult, Transaction]:
        """Record a deposit, or return the one already recorded under ``reference``.

        Must stay free of ``await``: this is what makes concurrent duplicates safe.
        """
        fingerprint = card_fingerprint(card_number)
        existing = self._items.get(reference)
        if existing is not None:
            if existing.matches(fingerprint, amount, currency):
                return RecordResult.REPLAYED, existing
            return RecordResult.CONFLICT, existing
        transaction = Transaction(
            transaction_id=str(uuid.uuid4()),
            reference=reference,
            card_fingerprint=fingerprint,
            amount=amount,
            currency=currency,
            outcome=outcome_for(card_number),
            created_at=self._clock(),
        )
        self._items[reference] = transaction
        while len(self._items) > self._max:
            self._items.popitem(last=False)
        return RecordResult.CREATED, transaction

    def view(self, transaction: Transaction) -> dict[str, Any]:
        """The public representation of ``transaction`` as it stands now."""
        outcome = transaction.outcome_at(self._clock(), self._settle_seconds)
        return {
            "transaction_id": transaction.transaction_id,
            "reference": transaction.reference,
            "status": outcome.status.value,
            "code": outcome.code,
            "reason": outcome.reason,
        }
