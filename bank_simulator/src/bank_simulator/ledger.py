"""In-memory, bounded store of deposits, of the captures, voids and refunds made on them, and
of 3-D Secure authentications.

The store is used from the event loop only and none of its methods await, so every
check-and-apply (:meth:`Ledger.record`, :meth:`Ledger.operate`) is atomic with respect to
concurrent requests: two refunds racing for the last amount of a deposit cannot both pass.
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
from datetime import UTC, datetime
from enum import Enum, StrEnum
from typing import Any

from bank_simulator.cards import (
    AUTHORIZED,
    REFUND_DECLINED,
    SUCCEEDED,
    VOIDED,
    Outcome,
    Status,
    declines_refunds,
    enrolment,
    outcome_for,
)
from bank_simulator.threeds import Authentication

Clock = Callable[[], float]

# Per-process key: fingerprints are only compared within this process, and a keyed hash
# cannot be reversed by enumerating the (small) space of card numbers.
_FINGERPRINT_KEY = secrets.token_bytes(32)

# Deposits, operations and authentications share one bounded store, each under its own
# reference namespace.
_DEPOSIT = "deposit"
_OPERATION = "operation"
_AUTHENTICATION = "authentication"


def card_fingerprint(card_number: str) -> bytes:
    """HMAC-SHA-256 of the card number under a per-process random key."""
    return hmac.digest(_FINGERPRINT_KEY, card_number.encode("ascii"), "sha256")


def _timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC with microseconds, e.g. ``2026-11-25T12:00:00.123456Z``."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(slots=True)
class Transaction:
    """A deposit. Its identity is fixed; captures, voids and refunds change its state."""

    transaction_id: str
    reference: str
    card_fingerprint: bytes
    amount: int
    currency: str
    capture: bool  # false: only authorized, waiting for a capture or a void
    outcome: Outcome  # as first recorded (a pending one settles lazily, see outcome_at)
    created_at: float  # on the ledger's (monotonic) clock
    declines_refunds: bool
    captured_by_operation: int = 0  # what a capture operation took of the authorization
    voided: bool = False
    refunded_amount: int = 0  # the sum of succeeded refunds

    def matches(self, card_fingerprint: bytes, amount: int, currency: str, capture: bool) -> bool:
        return (
            hmac.compare_digest(self.card_fingerprint, card_fingerprint)
            and self.amount == amount
            and self.currency == currency
            and self.capture == capture
        )

    def outcome_at(self, now: float, settle_seconds: float) -> Outcome:
        """The outcome as it stands at ``now``: a pending deposit settles after a delay,
        then an authorization reads as captured or voided once an operation did so."""
        outcome = self.outcome
        if outcome.status is Status.PENDING and now - self.created_at >= settle_seconds:
            outcome = SUCCEEDED if self.capture else AUTHORIZED
        if outcome.status is Status.AUTHORIZED:
            if self.voided:
                return VOIDED
            if self.captured_by_operation:
                return SUCCEEDED
        return outcome

    def captured_amount(self, outcome: Outcome) -> int:
        """What was taken from the card, given the deposit's current ``outcome``."""
        if outcome.status is not Status.SUCCEEDED:
            return 0
        return self.amount if self.capture else self.captured_by_operation


class OperationKind(StrEnum):
    CAPTURE = "capture"
    VOID = "void"
    REFUND = "refund"


@dataclass(slots=True, frozen=True)
class Operation:
    """A capture, void or refund as recorded: its answer never changes."""

    transaction_id: str
    reference: str
    deposit_reference: str
    kind: OperationKind
    amount: int
    outcome: Outcome
    created_at: datetime

    def matches(self, kind: OperationKind, deposit_reference: str, amount: int | None) -> bool:
        # A void's amount is not the caller's to choose (it releases the whole authorization).
        return (
            self.kind is kind
            and self.deposit_reference == deposit_reference
            and (kind is OperationKind.VOID or self.amount == amount)
        )


class RecordResult(Enum):
    CREATED = "created"
    REPLAYED = "replayed"
    CONFLICT = "conflict"


class OperationRefused(Exception):
    """The bank's rules refuse this operation; nothing was recorded."""


class DepositNotFound(OperationRefused):
    pass


class DepositStatusConflict(OperationRefused):
    """The deposit is not in the one status the operation starts from."""

    def __init__(self, status: Status, required: Status) -> None:
        super().__init__(f"deposit is {status.value}, not {required.value}")
        self.status = status
        self.required = required


class AmountTooLarge(OperationRefused):
    """The amount exceeds what the deposit has left for this operation."""

    def __init__(self, available: int) -> None:
        super().__init__(f"at most {available} is available")
        self.available = available


class Ledger:
    def __init__(
        self,
        max_transactions: int,
        settle_seconds: float,
        clock: Clock = time.monotonic,
    ) -> None:
        if max_transactions < 1:
            raise ValueError("max_transactions must be at least 1")
        self._items: OrderedDict[tuple[str, str], Transaction | Operation | Authentication] = (
            OrderedDict()
        )
        self._authentication_references: dict[str, str] = {}  # authentication id → reference
        self._max = max_transactions
        self._settle_seconds = settle_seconds
        self._clock = clock

    def __len__(self) -> int:
        """Deposits, operations and authentications held (all count toward
        ``max_transactions``)."""
        return len(self._items)

    def __contains__(self, reference: object) -> bool:
        """Whether a deposit with this reference is held."""
        return (_DEPOSIT, reference) in self._items

    def get(self, reference: str) -> Transaction | None:
        """The deposit recorded under ``reference``."""
        item = self._items.get((_DEPOSIT, reference))
        return item if isinstance(item, Transaction) else None

    def operation(self, kind: OperationKind, reference: str) -> Operation | None:
        """The operation of this kind recorded under ``reference``."""
        item = self._items.get((_OPERATION, reference))
        return item if isinstance(item, Operation) and item.kind is kind else None

    def authentication(self, reference: str) -> Authentication | None:
        """The 3-D Secure authentication recorded under ``reference``."""
        item = self._items.get((_AUTHENTICATION, reference))
        return item if isinstance(item, Authentication) else None

    def authentication_by_id(self, authentication_id: str) -> Authentication | None:
        """The 3-D Secure authentication with this (bank-assigned) id."""
        reference = self._authentication_references.get(authentication_id)
        return None if reference is None else self.authentication(reference)

    def authenticate(
        self, reference: str, card_number: str, amount: int, currency: str, return_url: str
    ) -> tuple[RecordResult, Authentication]:
        """Start a 3-D Secure authentication, or return the one already under ``reference``.

        Must stay free of ``await``, like :meth:`record`.
        """
        fingerprint = card_fingerprint(card_number)
        existing = self.authentication(reference)
        if existing is not None:
            return _repeat(existing.matches(fingerprint, amount, currency, return_url)), existing
        authentication = Authentication.start(
            reference,
            fingerprint,
            card_number[-4:],
            amount,
            currency,
            return_url,
            enrolment(card_number),
        )
        self._authentication_references[authentication.id] = reference
        self._store((_AUTHENTICATION, reference), authentication)
        return RecordResult.CREATED, authentication

    def record(
        self,
        reference: str,
        card_number: str,
        amount: int,
        currency: str,
        capture: bool = True,
        authentication_id: str | None = None,
    ) -> tuple[RecordResult, Transaction]:
        """Record a deposit, or return the one already recorded under ``reference``.

        A card enrolled in 3-D Secure needs ``authentication_id`` to name an authenticated
        authentication of the same card, amount and currency; else the deposit is declined
        ``authentication_required``. The authentication is not part of the duplicate
        comparison: a repeat gets the first answer, whatever it names.
        Must stay free of ``await``: this is what makes concurrent duplicates safe.
        """
        fingerprint = card_fingerprint(card_number)
        existing = self.get(reference)
        if existing is not None:
            return _repeat(existing.matches(fingerprint, amount, currency, capture)), existing
        authentication = (
            self.authentication_by_id(authentication_id) if authentication_id is not None else None
        )
        authenticated = authentication is not None and authentication.covers(
            fingerprint, amount, currency
        )
        transaction = Transaction(
            transaction_id=str(uuid.uuid4()),
            reference=reference,
            card_fingerprint=fingerprint,
            amount=amount,
            currency=currency,
            capture=capture,
            outcome=outcome_for(card_number, capture=capture, authenticated=authenticated),
            created_at=self._clock(),
            declines_refunds=declines_refunds(card_number),
        )
        self._store((_DEPOSIT, reference), transaction)
        return RecordResult.CREATED, transaction

    def capture(
        self, reference: str, deposit_reference: str, amount: int
    ) -> tuple[RecordResult, Operation]:
        """Capture ``amount`` of an authorized deposit; the rest of the authorization is released.

        Only one capture per deposit: afterwards it reads ``succeeded``.
        """

        def apply(deposit: Transaction, status: Status) -> tuple[int, Outcome]:
            _require_status(status, Status.AUTHORIZED)
            if amount > deposit.amount:
                raise AmountTooLarge(deposit.amount)
            deposit.captured_by_operation = amount
            return amount, SUCCEEDED

        return self._operate(OperationKind.CAPTURE, reference, deposit_reference, amount, apply)

    def void(self, reference: str, deposit_reference: str) -> tuple[RecordResult, Operation]:
        """Release the whole authorization of an authorized deposit."""

        def apply(deposit: Transaction, status: Status) -> tuple[int, Outcome]:
            _require_status(status, Status.AUTHORIZED)
            deposit.voided = True
            return deposit.amount, SUCCEEDED

        return self._operate(OperationKind.VOID, reference, deposit_reference, None, apply)

    def refund(
        self, reference: str, deposit_reference: str, amount: int
    ) -> tuple[RecordResult, Operation]:
        """Give back ``amount`` of a captured deposit, never more than is left unrefunded."""

        def apply(deposit: Transaction, status: Status) -> tuple[int, Outcome]:
            _require_status(status, Status.SUCCEEDED)
            left = deposit.captured_amount(SUCCEEDED) - deposit.refunded_amount
            if amount > left:
                raise AmountTooLarge(left)
            if deposit.declines_refunds:
                return amount, REFUND_DECLINED  # declined: nothing is given back
            deposit.refunded_amount += amount
            return amount, SUCCEEDED

        return self._operate(OperationKind.REFUND, reference, deposit_reference, amount, apply)

    def _operate(
        self,
        kind: OperationKind,
        reference: str,
        deposit_reference: str,
        amount: int | None,
        apply: Callable[[Transaction, Status], tuple[int, Outcome]],
    ) -> tuple[RecordResult, Operation]:
        """Apply an operation once, or return the one already recorded under ``reference``.

        ``apply`` checks the bank's rules against the deposit's current status, changes the
        deposit and returns the amount and outcome to record; it raises
        :class:`OperationRefused` (nothing recorded) when the rules forbid the operation.
        Must stay free of ``await``: the check and the change to the deposit are one step.
        """
        existing = self._items.get((_OPERATION, reference))
        if isinstance(existing, Operation):
            return _repeat(existing.matches(kind, deposit_reference, amount)), existing
        deposit = self.get(deposit_reference)
        if deposit is None:
            raise DepositNotFound("no deposit has this reference")
        status = deposit.outcome_at(self._clock(), self._settle_seconds).status
        applied, outcome = apply(deposit, status)
        operation = Operation(
            transaction_id=str(uuid.uuid4()),
            reference=reference,
            deposit_reference=deposit_reference,
            kind=kind,
            amount=applied,
            outcome=outcome,
            created_at=datetime.now(UTC),
        )
        self._store((_OPERATION, reference), operation)
        return RecordResult.CREATED, operation

    def _store(self, key: tuple[str, str], item: Transaction | Operation | Authentication) -> None:
        self._items[key] = item
        while len(self._items) > self._max:
            _, dropped = self._items.popitem(last=False)
            if isinstance(dropped, Authentication):
                del self._authentication_references[dropped.id]

    def view(self, transaction: Transaction) -> dict[str, Any]:
        """The public representation of the deposit ``transaction`` as it stands now."""
        outcome = transaction.outcome_at(self._clock(), self._settle_seconds)
        return {
            "transaction_id": transaction.transaction_id,
            "reference": transaction.reference,
            "status": outcome.status.value,
            "code": outcome.code,
            "reason": outcome.reason,
            "captured_amount": transaction.captured_amount(outcome),
            "refunded_amount": transaction.refunded_amount,
        }


def operation_view(operation: Operation) -> dict[str, Any]:
    """The public representation of an operation, the same on every read."""
    return {
        "reference": operation.reference,
        "deposit_reference": operation.deposit_reference,
        "kind": operation.kind.value,
        "amount": operation.amount,
        "status": operation.outcome.status.value,
        "code": operation.outcome.code,
        "reason": operation.outcome.reason,
        "transaction_id": operation.transaction_id,
        "created_at": _timestamp(operation.created_at),
    }


def _repeat(same_content: bool) -> RecordResult:
    """A reference seen before: the first answer again, or a conflict."""
    return RecordResult.REPLAYED if same_content else RecordResult.CONFLICT


def _require_status(status: Status, required: Status) -> None:
    if status is not required:
        raise DepositStatusConflict(status, required)
