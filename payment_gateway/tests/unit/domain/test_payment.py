"""The payment status machine: a terminal status never changes (docs/design.md, Statuses)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from payment_gateway.domain.card import CardSummary
from payment_gateway.domain.payment import (
    OPEN_STATUSES,
    TERMINAL_STATUSES,
    UNSETTLED_STATUSES,
    Payment,
    PaymentRequest,
    PaymentStatus,
    Resolution,
    can_transition,
    statuses_that_may_become,
)

T0 = datetime(2030, 1, 1, tzinfo=UTC)
statuses = st.sampled_from(list(PaymentStatus))
optional_text = st.none() | st.text(min_size=1, max_size=8)
resolutions = st.builds(
    Resolution,
    status=statuses,
    code=optional_text,
    decline_reason=optional_text,
    tracking_id=optional_text,
)


def new_payment() -> Payment:
    return Payment(
        id="p-1",
        merchant_id="m-1",
        status=PaymentStatus.INIT,
        amount=1000,
        currency="USD",
        reference=None,
        card=CardSummary("4242", "visa", 12, 2042),
        created_at=T0,
        updated_at=T0,
    )


def test_status_sets() -> None:
    assert {PaymentStatus.SUCCEEDED, PaymentStatus.FAILED, PaymentStatus.CANCELED} == (
        TERMINAL_STATUSES
    )
    assert {PaymentStatus.INIT, PaymentStatus.PROCESSING} == OPEN_STATUSES
    assert all(s.is_terminal for s in TERMINAL_STATUSES)
    assert not any(s.is_terminal for s in OPEN_STATUSES)


@pytest.mark.parametrize(
    ("current", "new", "allowed"),
    [
        (PaymentStatus.INIT, PaymentStatus.PROCESSING, True),
        (PaymentStatus.INIT, PaymentStatus.SUCCEEDED, True),
        (PaymentStatus.INIT, PaymentStatus.FAILED, True),
        (PaymentStatus.PROCESSING, PaymentStatus.SUCCEEDED, True),
        (PaymentStatus.PROCESSING, PaymentStatus.FAILED, True),
        (PaymentStatus.PROCESSING, PaymentStatus.INIT, False),
        (PaymentStatus.INIT, PaymentStatus.INIT, False),
        (PaymentStatus.SUCCEEDED, PaymentStatus.FAILED, False),
        (PaymentStatus.FAILED, PaymentStatus.SUCCEEDED, False),
        (PaymentStatus.SUCCEEDED, PaymentStatus.PROCESSING, False),
        (PaymentStatus.FAILED, PaymentStatus.INIT, False),
        (PaymentStatus.INIT, PaymentStatus.AUTHORIZED, True),
        (PaymentStatus.PROCESSING, PaymentStatus.AUTHORIZED, True),
        (PaymentStatus.AUTHORIZED, PaymentStatus.SUCCEEDED, True),  # captured
        (PaymentStatus.AUTHORIZED, PaymentStatus.CANCELED, True),  # voided or expired
        (PaymentStatus.AUTHORIZED, PaymentStatus.FAILED, False),
        (PaymentStatus.AUTHORIZED, PaymentStatus.PROCESSING, False),
        (PaymentStatus.INIT, PaymentStatus.CANCELED, False),
        (PaymentStatus.CANCELED, PaymentStatus.SUCCEEDED, False),
        (PaymentStatus.SUCCEEDED, PaymentStatus.CANCELED, False),
    ],
)
def test_can_transition_table(current: PaymentStatus, new: PaymentStatus, allowed: bool) -> None:
    assert can_transition(current, new) is allowed


@given(st.sampled_from(sorted(TERMINAL_STATUSES)), statuses)
def test_can_transition_never_leaves_a_terminal_status(
    current: PaymentStatus, new: PaymentStatus
) -> None:
    assert not can_transition(current, new)


@given(statuses)
def test_statuses_that_may_become_matches_can_transition(new: PaymentStatus) -> None:
    # A bank answer moves only a payment not yet charged: an authorization moves on by a
    # capture or a void alone.
    expected = {s for s in UNSETTLED_STATUSES if can_transition(s, new)}
    assert set(statuses_that_may_become(new)) == expected
    assert not statuses_that_may_become(new) & TERMINAL_STATUSES
    assert PaymentStatus.AUTHORIZED not in statuses_that_may_become(new)


def test_statuses_that_may_become_values() -> None:
    # init again only after a 3-D Secure challenge; only a new payment is challenged
    assert statuses_that_may_become(PaymentStatus.INIT) == {PaymentStatus.REQUIRES_ACTION}
    assert statuses_that_may_become(PaymentStatus.REQUIRES_ACTION) == {PaymentStatus.INIT}
    assert statuses_that_may_become(PaymentStatus.PROCESSING) == {PaymentStatus.INIT}
    assert statuses_that_may_become(PaymentStatus.SUCCEEDED) == OPEN_STATUSES
    assert statuses_that_may_become(PaymentStatus.FAILED) == UNSETTLED_STATUSES
    assert statuses_that_may_become(PaymentStatus.AUTHORIZED) == OPEN_STATUSES
    assert statuses_that_may_become(PaymentStatus.CANCELED) == frozenset()


@given(st.lists(resolutions, max_size=12))
def test_once_terminal_the_status_never_changes(attempts: list[Resolution]) -> None:
    payment = new_payment()
    frozen: Payment | None = None
    for step, resolution in enumerate(attempts, start=1):
        payment.apply(resolution, T0 + timedelta(seconds=step))
        if frozen is not None:
            assert payment == frozen  # nothing at all changes on a terminal payment
        elif payment.status.is_terminal:
            frozen = copy.deepcopy(payment)


@given(st.lists(resolutions, max_size=12))
def test_apply_is_consistent_with_can_transition(attempts: list[Resolution]) -> None:
    payment = new_payment()
    for step, resolution in enumerate(attempts, start=1):
        before = copy.deepcopy(payment)
        now = T0 + timedelta(seconds=step)
        applied = payment.apply(resolution, now)
        assert applied is (
            before.status in UNSETTLED_STATUSES and can_transition(before.status, resolution.status)
        )
        if applied:
            assert payment.status is resolution.status
            captured = payment.amount if resolution.status is PaymentStatus.SUCCEEDED else 0
            assert payment.amount_captured == captured
            assert payment.code == resolution.code
            assert payment.decline_reason == resolution.decline_reason
            assert payment.tracking_id == (resolution.tracking_id or before.tracking_id)
            assert payment.updated_at == now
        else:
            assert payment.status is before.status
            assert payment.code == before.code
            assert payment.decline_reason == before.decline_reason
            assert payment.updated_at == before.updated_at


def test_processing_again_only_picks_up_a_tracking_id() -> None:
    payment = new_payment()
    assert payment.apply(Resolution(PaymentStatus.PROCESSING, code="200"), T0)
    assert not payment.apply(Resolution(PaymentStatus.PROCESSING, tracking_id="tx-9"), T0)
    assert payment.status is PaymentStatus.PROCESSING
    assert payment.tracking_id == "tx-9"
    assert payment.code == "200"


def test_payment_request_repr_hides_pan_cvv_and_holder() -> None:
    request = PaymentRequest(
        pan="4242424242424242",
        cvv="987",
        expiry_month=12,
        expiry_year=2042,
        holder_name="Jane Secretholder",
        amount=1000,
        currency="USD",
        reference="order-1",
    )
    for text in (repr(request), str(request), f"{request}", f"{request!r}"):
        assert "4242424242424242" not in text
        assert "987" not in text
        assert "Secretholder" not in text
    assert "USD" in repr(request)  # the rest is still shown


@given(
    pan=st.from_regex(r"[0-9]{12,19}", fullmatch=True),
    cvv=st.from_regex(r"[0-9]{3,4}", fullmatch=True),
)
def test_payment_request_repr_never_contains_pan_or_cvv(pan: str, cvv: str) -> None:
    request = PaymentRequest(
        pan=pan,
        cvv=cvv,
        expiry_month=1,
        expiry_year=2042,
        holder_name=None,
        amount=5,
        currency="EUR",
        reference=None,
    )
    text = repr(request)
    assert pan not in text
    # The only multi-digit number legitimately shown is the expiry year.
    assert cvv not in text.replace("expiry_year=2042", "")
