"""The in-memory ledger and the card table, without HTTP."""

from __future__ import annotations

import pytest
from bank_simulator.cards import Status, outcome_for
from bank_simulator.ledger import Ledger, RecordResult, card_fingerprint

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
        ("378282246310005", ("failed", "100", "card_not_supported")),
    ],
)
def test_card_table(number: str, expected: tuple[str, str, str | None]) -> None:
    outcome = outcome_for(number)
    assert (outcome.status.value, outcome.code, outcome.reason) == expected
