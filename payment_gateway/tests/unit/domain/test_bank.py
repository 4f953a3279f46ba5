"""What a bank answer means for a payment (docs/design.md, The payment flow)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from payment_gateway.domain.bank import BankAnswer, BankFault, resolve_deposit
from payment_gateway.domain.payment import PaymentStatus

optional_text = st.none() | st.text(max_size=20)


def test_code_0_succeeds() -> None:
    resolution = resolve_deposit(BankAnswer("0", None, "tx-1"))
    assert resolution.status is PaymentStatus.SUCCEEDED
    assert resolution.code == "0"
    assert resolution.decline_reason is None
    assert resolution.tracking_id == "tx-1"


@pytest.mark.parametrize("reason", ["insufficient_funds", "card_not_supported"])
def test_code_100_fails_with_the_banks_reason(reason: str) -> None:
    resolution = resolve_deposit(BankAnswer("100", reason, "tx-2"))
    assert resolution.status is PaymentStatus.FAILED
    assert resolution.code == "100"
    assert resolution.decline_reason == reason
    assert resolution.tracking_id == "tx-2"


def test_code_100_without_a_reason_still_has_one() -> None:
    resolution = resolve_deposit(BankAnswer("100", None, None))
    assert resolution.status is PaymentStatus.FAILED
    assert resolution.decline_reason


def test_code_200_is_processing() -> None:
    resolution = resolve_deposit(BankAnswer("200", None, "tx-3"))
    assert resolution.status is PaymentStatus.PROCESSING
    assert resolution.code == "200"
    assert resolution.decline_reason is None
    assert resolution.tracking_id == "tx-3"


@given(code=st.text(max_size=12), reason=optional_text, transaction_id=optional_text)
def test_any_code_string(code: str, reason: str | None, transaction_id: str | None) -> None:
    resolution = resolve_deposit(BankAnswer(code, reason, transaction_id))
    if code == "0":
        assert resolution.status is PaymentStatus.SUCCEEDED
    elif code == "100":
        assert resolution.status is PaymentStatus.FAILED
        assert resolution.code == "100"
        assert resolution.decline_reason == (reason if reason else "declined")
    else:
        # "200" and any code we do not know: reconcile later, never a guess either way.
        assert resolution.status is PaymentStatus.PROCESSING
        assert resolution.decline_reason is None
    assert resolution.tracking_id == transaction_id


@pytest.mark.parametrize("code", ["00", " 0", "0 ", "100 ", "1000", "-1", "", "OK", "300", "05"])
def test_near_miss_codes_are_processing(code: str) -> None:
    resolution = resolve_deposit(BankAnswer(code, "insufficient_funds", "tx"))
    assert resolution.status is PaymentStatus.PROCESSING
    assert resolution.decline_reason is None
    assert resolution.code is None  # an unknown code is not reported as the bank's code


@pytest.mark.parametrize(
    ("fault", "status", "reason"),
    [
        (BankFault.NOT_SENT, PaymentStatus.FAILED, "bank_unavailable"),
        (BankFault.REJECTED, PaymentStatus.FAILED, "bank_rejected"),
        (BankFault.UNCERTAIN, PaymentStatus.PROCESSING, None),
    ],
)
def test_bank_faults(fault: BankFault, status: PaymentStatus, reason: str | None) -> None:
    resolution = resolve_deposit(fault)
    assert resolution.status is status
    assert resolution.code is None
    assert resolution.decline_reason == reason
    assert resolution.tracking_id is None
