"""The in-memory ledger and the card table, without HTTP."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from bank_simulator.cards import REFUND_DECLINED, Status, declines_refunds, outcome_for
from bank_simulator.ledger import (
    AmountTooLarge,
    DepositNotFound,
    DepositStatusConflict,
    Ledger,
    Operation,
    OperationKind,
    RecordResult,
    card_fingerprint,
    operation_view,
)

from ..conftest import FakeClock


def test_record_then_replay_then_conflict(clock: FakeClock) -> None:
    ledger = Ledger(max_transactions=10, settle_seconds=5, clock=clock)

    result, first = ledger.record("r", "4242424242424242", 100, "USD")
    assert result is RecordResult.CREATED
    assert ledger.record("r", "4242424242424242", 100, "USD") == (RecordResult.REPLAYED, first)
    for other in [
        ("4000000000000002", 100, "USD"),
        ("4242424242424242", 101, "USD"),
        ("4242424242424242", 100, "EUR"),
    ]:
        assert ledger.record("r", *other) == (RecordResult.CONFLICT, first)
    assert len(ledger) == 1


def test_oldest_is_evicted_first(clock: FakeClock) -> None:
    ledger = Ledger(max_transactions=2, settle_seconds=5, clock=clock)
    for ref in "abc":
        ledger.record(ref, "4242424242424242", 1, "USD")
    ledger.get("b")  # reading does not refresh an entry
    ledger.record("d", "4242424242424242", 1, "USD")
    assert [ref for ref in "abcd" if ref in ledger] == ["c", "d"]


def test_rejects_a_zero_bound() -> None:
    with pytest.raises(ValueError, match="max_transactions"):
        Ledger(max_transactions=0, settle_seconds=5)


def test_pending_view_settles_lazily(clock: FakeClock) -> None:
    ledger = Ledger(max_transactions=10, settle_seconds=2, clock=clock)
    _, transaction = ledger.record("p", "4000000000009995", 1, "USD")
    assert ledger.view(transaction)["status"] == "pending"
    clock.advance(2)
    assert ledger.view(transaction) | {"transaction_id": None} == {
        "transaction_id": None,
        "reference": "p",
        "status": "succeeded",
        "code": "0",
        "reason": None,
        "captured_amount": 1,
        "refunded_amount": 0,
    }
    assert transaction.outcome.status is Status.PENDING  # the record itself is unchanged


def test_zero_settle_delay_settles_immediately(clock: FakeClock) -> None:
    ledger = Ledger(max_transactions=10, settle_seconds=0, clock=clock)
    _, transaction = ledger.record("p", "4000000000009995", 1, "USD")
    assert ledger.view(transaction)["status"] == "succeeded"


def test_card_number_is_kept_only_as_a_fingerprint(clock: FakeClock) -> None:
    ledger = Ledger(max_transactions=10, settle_seconds=5, clock=clock)
    _, transaction = ledger.record("r", "4242424242424242", 1, "USD")
    assert transaction.card_fingerprint == card_fingerprint("4242424242424242")
    assert len(transaction.card_fingerprint) == 32
    assert "4242424242424242" not in repr(transaction)
    assert all(
        "4242424242424242" not in str(getattr(transaction, field))
        for field in transaction.__slots__
    )


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        ("4242424242424242", ("succeeded", "0", None)),
        ("4000000000000002", ("failed", "100", "insufficient_funds")),
        ("4000000000009995", ("pending", "200", None)),
        ("4000000000005126", ("succeeded", "0", None)),
        ("378282246310005", ("failed", "100", "card_not_supported")),
    ],
)
def test_card_table(number: str, expected: tuple[str, str, str | None]) -> None:
    outcome = outcome_for(number)
    assert (outcome.status.value, outcome.code, outcome.reason) == expected


def test_card_table_without_capture() -> None:
    assert outcome_for("4242424242424242", capture=False).status is Status.AUTHORIZED
    assert outcome_for("4000000000005126", capture=False).status is Status.AUTHORIZED
    assert outcome_for("4000000000009995", capture=False).status is Status.PENDING
    assert outcome_for("4000000000000002", capture=False).reason == "insufficient_funds"


def test_only_the_5126_card_declines_refunds() -> None:
    assert declines_refunds("4000000000005126")
    assert not declines_refunds("4242424242424242")
    assert outcome_for("4000000000005126").status is Status.SUCCEEDED


def test_capture_flag_is_part_of_a_deposit_identity(clock: FakeClock) -> None:
    ledger = Ledger(max_transactions=10, settle_seconds=5, clock=clock)
    result, first = ledger.record("r", "4242424242424242", 100, "USD", capture=False)
    assert result is RecordResult.CREATED
    assert ledger.record("r", "4242424242424242", 100, "USD", capture=False)[0] is (
        RecordResult.REPLAYED
    )
    assert ledger.record("r", "4242424242424242", 100, "USD") == (RecordResult.CONFLICT, first)


def test_authorize_capture_refund_without_http(clock: FakeClock) -> None:
    ledger = Ledger(max_transactions=10, settle_seconds=5, clock=clock)
    _, deposit = ledger.record("d", "4242424242424242", 1000, "USD", capture=False)
    assert ledger.view(deposit)["status"] == "authorized"

    result, capture = ledger.capture("c", "d", 600)
    assert (result, capture.kind, capture.amount) == (
        RecordResult.CREATED,
        OperationKind.CAPTURE,
        600,
    )
    assert ledger.refund("r1", "d", 500)[0] is RecordResult.CREATED
    with pytest.raises(AmountTooLarge) as too_large:
        ledger.refund("r2", "d", 101)
    assert too_large.value.available == 100
    view = ledger.view(deposit)
    assert (view["status"], view["captured_amount"], view["refunded_amount"]) == (
        "succeeded",
        600,
        500,
    )
    assert ledger.operation(OperationKind.CAPTURE, "c") is capture
    assert ledger.operation(OperationKind.REFUND, "c") is None  # another kind's reference
    assert ledger.operation(OperationKind.REFUND, "r2") is None  # refused: not recorded


def test_void_releases_the_authorization(clock: FakeClock) -> None:
    ledger = Ledger(max_transactions=10, settle_seconds=5, clock=clock)
    _, deposit = ledger.record("d", "4242424242424242", 1000, "USD", capture=False)
    _, void = ledger.void("v", "d")
    assert (void.amount, void.outcome.status) == (1000, Status.SUCCEEDED)
    assert ledger.view(deposit)["status"] == "voided"
    with pytest.raises(DepositStatusConflict) as refused:
        ledger.capture("c", "d", 10)
    assert (refused.value.status, refused.value.required) == (Status.VOIDED, Status.AUTHORIZED)


def test_unknown_deposit_is_refused(clock: FakeClock) -> None:
    ledger = Ledger(max_transactions=10, settle_seconds=5, clock=clock)
    with pytest.raises(DepositNotFound):
        ledger.void("v", "missing")
    assert len(ledger) == 0


def test_operation_replay_and_conflict(clock: FakeClock) -> None:
    ledger = Ledger(max_transactions=10, settle_seconds=5, clock=clock)
    _, deposit = ledger.record("d", "4242424242424242", 100, "USD")
    _, first = ledger.refund("op", "d", 10)
    assert ledger.refund("op", "d", 10) == (RecordResult.REPLAYED, first)
    assert ledger.refund("op", "d", 11) == (RecordResult.CONFLICT, first)
    assert ledger.capture("op", "d", 10) == (RecordResult.CONFLICT, first)
    assert ledger.view(deposit)["refunded_amount"] == 10


def test_operation_view_timestamp_is_rfc3339_utc() -> None:
    operation = Operation(
        transaction_id="t",
        reference="op",
        deposit_reference="d",
        kind=OperationKind.REFUND,
        amount=5,
        outcome=REFUND_DECLINED,
        created_at=datetime(2026, 11, 25, 12, 0, 0, 120, tzinfo=UTC),
    )
    assert operation_view(operation) == {
        "reference": "op",
        "deposit_reference": "d",
        "kind": "refund",
        "amount": 5,
        "status": "failed",
        "code": "100",
        "reason": "refund_declined",
        "transaction_id": "t",
        "created_at": "2026-11-25T12:00:00.000120Z",
    }
