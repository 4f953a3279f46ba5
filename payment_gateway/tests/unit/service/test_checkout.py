"""Checkout sessions with in-memory fakes: what payments do to their sessions, whoever
records them, and the expiry rules."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fakes import FakeBank, FakeClock, FakeStore, FakeUnitOfWorkFactory
from payment_gateway.domain.bank import BankFault
from payment_gateway.domain.checkout import (
    MAX_DECLINES,
    CardEntry,
    CheckoutPaymentStatus,
    CheckoutSessionDraft,
    CheckoutStatus,
)
from payment_gateway.domain.events import EventType
from payment_gateway.domain.merchant import Merchant
from payment_gateway.domain.payment import PaymentStatus
from payment_gateway.service import recording
from payment_gateway.service.checkout import CheckoutPolicy, CheckoutService
from payment_gateway.service.errors import InvalidRequest, NotFound, WrongStatus
from payment_gateway.service.recording import TransactionalRecorder

from ..conftest import MakePaymentService, MakeReconciler, MakeRequest

SUCCEEDS, DECLINED, PENDING = "4242424242424242", "4000000000000002", "4000000000009995"
DRAFT = CheckoutSessionDraft(
    amount=1999,
    currency="EUR",
    reference="order-1",
    success_url="https://shop.example/ok",
    cancel_url="https://shop.example/cart",
)


def card(pan: str = SUCCEEDS) -> CardEntry:
    return CardEntry(pan, "123", 12, 2042, "Ada")


@pytest.fixture
def merchant(store: FakeStore, clock: FakeClock) -> Merchant:
    merchant = Merchant("merchant-1", "merchant_one")
    store.merchants[merchant.id] = merchant
    return merchant


def make_checkout(
    uow_factory: FakeUnitOfWorkFactory,
    make_payment_service: MakePaymentService,
    bank: FakeBank,
    clock: FakeClock,
    *,
    allow_http: bool = True,
) -> CheckoutService:
    policy = CheckoutPolicy(
        public_url="https://pay.example",
        allow_http_urls=allow_http,
        wait_for_first_post=timedelta(seconds=0),
    )
    recorder = TransactionalRecorder(uow_factory)
    return CheckoutService(uow_factory, recorder, make_payment_service(bank), policy, clock=clock)


@pytest.fixture
def checkout(
    uow_factory: FakeUnitOfWorkFactory,
    make_payment_service: MakePaymentService,
    bank: FakeBank,
    clock: FakeClock,
) -> CheckoutService:
    return make_checkout(uow_factory, make_payment_service, bank, clock)


def event_types(store: FakeStore, object_id: str) -> list[EventType]:
    return [event.type for event in store.events.values() if event.object_id == object_id]


async def test_a_session_opens_for_an_hour_at_its_url(
    checkout: CheckoutService, merchant: Merchant, clock: FakeClock
) -> None:
    session = await checkout.create(merchant, DRAFT)
    assert session.url == f"https://pay.example/checkout/{session.id}"
    assert session.expires_at == clock() + timedelta(hours=1)
    assert (await checkout.get(merchant, session.id)).status is CheckoutStatus.OPEN
    with pytest.raises(NotFound):
        await checkout.get(Merchant("merchant-2", "other"), session.id)


async def test_production_takes_https_redirect_urls_only(
    uow_factory: FakeUnitOfWorkFactory,
    make_payment_service: MakePaymentService,
    bank: FakeBank,
    clock: FakeClock,
    merchant: Merchant,
) -> None:
    production = make_checkout(uow_factory, make_payment_service, bank, clock, allow_http=False)
    draft = CheckoutSessionDraft(
        1999, "EUR", None, "http://shop.example/ok", "http://shop.example/cart"
    )
    with pytest.raises(InvalidRequest) as refused:
        await production.create(merchant, draft)
    assert [error.field for error in refused.value.errors] == ["success_url", "cancel_url"]
    assert "https" in refused.value.errors[0].message
    assert await production.create(merchant, DRAFT)


async def test_paying_completes_the_session_in_the_payments_transaction(
    checkout: CheckoutService, merchant: Merchant, store: FakeStore, bank: FakeBank
) -> None:
    session = await checkout.create(merchant, DRAFT)
    commits = store.commits

    view = await checkout.pay(session.id, 0, card())

    assert view.payment is not None
    assert view.session is not None
    assert view.session.status is CheckoutStatus.COMPLETE
    assert view.session.payment_status is CheckoutPaymentStatus.PAID
    assert view.session.payment_id == view.payment.id
    assert store.commits - commits == 2  # the payment's insert, and its outcome with the session
    assert event_types(store, session.id) == [EventType.CHECKOUT_SESSION_COMPLETED]
    assert [deposit[1].amount for deposit in bank.deposits] == [1999]


async def test_five_declines_expire_the_session(
    checkout: CheckoutService, merchant: Merchant, store: FakeStore, bank: FakeBank
) -> None:
    session = await checkout.create(merchant, DRAFT)
    for attempt in range(MAX_DECLINES):
        view = await checkout.pay(session.id, attempt, card(DECLINED))
        assert view.session is not None
        assert view.session.declines == attempt + 1
    assert (await checkout.get(merchant, session.id)).status is CheckoutStatus.EXPIRED
    assert event_types(store, session.id) == [EventType.CHECKOUT_SESSION_EXPIRED]

    after = await checkout.pay(session.id, MAX_DECLINES, card())
    assert after.stale
    assert len(bank.deposits) == MAX_DECLINES


async def test_a_repeated_attempt_replays_its_payment(
    checkout: CheckoutService, merchant: Merchant, bank: FakeBank
) -> None:
    session = await checkout.create(merchant, DRAFT)
    first = await checkout.pay(session.id, 0, card(DECLINED))
    late_twin = await checkout.pay(session.id, 0, card(DECLINED))  # the form posted twice
    forged = await checkout.pay(session.id, 7, card(SUCCEEDS))  # an attempt never offered

    assert late_twin.stale
    assert forged.stale
    assert late_twin.payment == first.payment
    assert len(bank.deposits) == 1
    assert late_twin.session is not None
    assert late_twin.session.declines == 1  # a decline counts once, whoever posts it again


async def test_the_reconciler_completes_a_session_it_settles(
    uow_factory: FakeUnitOfWorkFactory,
    make_payment_service: MakePaymentService,
    merchant: Merchant,
    store: FakeStore,
    make_reconciler: MakeReconciler,
    clock: FakeClock,
) -> None:
    """The shopper is gone by the time the bank's answer is known: the session still completes."""
    bank = FakeBank(fault=BankFault.UNCERTAIN)  # charged, but the answer was lost
    checkout = make_checkout(uow_factory, make_payment_service, bank, clock)
    session = await checkout.create(merchant, DRAFT)
    view = await checkout.pay(session.id, 0, card())
    assert view.session is not None
    assert view.session.status is CheckoutStatus.OPEN
    assert view.session.payment_pending
    clock.advance(2 * 3600)
    assert await checkout.expire_due() == 0  # not while its payment may still succeed

    bank.fault = None
    await make_reconciler(bank).reconcile_due_payments()

    settled = await checkout.get(merchant, session.id)
    assert settled.status is CheckoutStatus.COMPLETE
    assert event_types(store, session.id) == [EventType.CHECKOUT_SESSION_COMPLETED]


async def test_payments_without_a_session_pay_nothing_for_sessions(
    make_payment_service: MakePaymentService,
    merchant: Merchant,
    make_request: MakeRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def never(*args: object) -> list[object]:
        raise AssertionError("an API payment looked at checkout sessions")

    monkeypatch.setattr(recording, "_follow_checkout_sessions", never)
    created = await make_payment_service(FakeBank()).create(merchant, make_request(), None)
    assert created.payment.status is PaymentStatus.SUCCEEDED


async def test_expiry(
    checkout: CheckoutService, merchant: Merchant, store: FakeStore, clock: FakeClock
) -> None:
    due = await checkout.create(merchant, DRAFT)
    clock.advance(30 * 60)
    later = await checkout.create(merchant, DRAFT)
    clock.advance(31 * 60)

    assert await checkout.expire_due() == 1

    assert (await checkout.get(merchant, due.id)).status is CheckoutStatus.EXPIRED
    assert (await checkout.get(merchant, later.id)).status is CheckoutStatus.OPEN
    assert event_types(store, due.id) == [EventType.CHECKOUT_SESSION_EXPIRED]
    expired = await checkout.expire(merchant, later.id)
    assert expired.status is CheckoutStatus.EXPIRED
    with pytest.raises(WrongStatus):
        await checkout.expire(merchant, later.id)
    view = await checkout.pay(later.id, 0, card())
    assert view.stale
    assert view.payment is None
