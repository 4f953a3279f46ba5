"""3-D Secure through the payment service: challenge, return, expiry (in-memory fakes)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from fakes import CHALLENGE_CARD, FRICTIONLESS_CARD, FakeBank, FakeClock, FakeStore
from payment_gateway.domain.bank import BankFault
from payment_gateway.domain.events import EventType
from payment_gateway.domain.merchant import Merchant
from payment_gateway.domain.payment import Payment, PaymentStatus
from payment_gateway.domain.three_d_secure import AuthenticationResult
from payment_gateway.service.errors import InvalidRequest
from payment_gateway.service.payments import PaymentService

from ..conftest import MakePaymentService, MakeReconciler, MakeRequest

RETURN_URL = "https://shop.example/orders/1234/paid"
CHALLENGE_TTL = timedelta(minutes=15)


@pytest.fixture
def service(make_payment_service: MakePaymentService, bank: FakeBank) -> PaymentService:
    return make_payment_service(bank)


async def challenged(
    service: PaymentService, merchant: Merchant, make_request: MakeRequest, *, capture: bool = True
) -> Payment:
    request = make_request(
        pan=CHALLENGE_CARD, three_d_secure_return_url=RETURN_URL, capture=capture
    )
    return (await service.create(merchant, request, None)).payment


async def test_a_challenge_card_requires_action_and_nothing_is_charged(
    service: PaymentService,
    bank: FakeBank,
    store: FakeStore,
    merchant: Merchant,
    make_request: MakeRequest,
) -> None:
    payment = await challenged(service, merchant, make_request)

    assert payment.status is PaymentStatus.REQUIRES_ACTION
    assert payment.three_d_secure is not None
    assert payment.three_d_secure.challenge_url == f"https://bank.test/3ds/challenge/{payment.id}"
    assert payment.three_d_secure.result is None
    assert bank.deposits == []
    # The bank sends the shopper back to the gateway, never straight to the merchant.
    assert bank.return_urls[payment.id] == f"http://127.0.0.1:8080/3ds/return/{payment.id}"
    assert store.payment(payment.id).status is PaymentStatus.REQUIRES_ACTION
    assert [event.type for event in store.events.values()] == [EventType.PAYMENT_REQUIRES_ACTION]


async def test_after_a_passed_challenge_the_stored_card_is_charged_once_without_a_cvv(
    service: PaymentService,
    bank: FakeBank,
    store: FakeStore,
    merchant: Merchant,
    make_request: MakeRequest,
) -> None:
    payment = await challenged(service, merchant, make_request)
    bank.answer_challenge(payment.id, passed=True)

    finished = await service.finish_authentication(payment.id)
    replayed = await service.finish_authentication(payment.id)  # the shopper reloads the page

    assert finished is not None
    assert replayed is not None
    assert finished.status is replayed.status is PaymentStatus.SUCCEEDED
    assert [(payment_id, request.pan, request.cvv) for payment_id, request in bank.deposits] == [
        (payment.id, CHALLENGE_CARD, None)
    ]
    assert bank.deposit_authentications[payment.id] == f"auth-{payment.id}"
    assert finished.three_d_secure is not None
    assert finished.three_d_secure.document() == {
        "authentication_flow": "challenge",
        "result": "authenticated",
        "eci": "05",
        "version": "2.2.0",
    }
    assert store.payment(payment.id).three_d_secure == finished.three_d_secure
    assert [event.type for event in store.events.values()] == [
        EventType.PAYMENT_REQUIRES_ACTION,
        EventType.PAYMENT_SUCCEEDED,
    ]


async def test_a_failed_challenge_fails_the_payment_and_charges_nothing(
    service: PaymentService, bank: FakeBank, merchant: Merchant, make_request: MakeRequest
) -> None:
    payment = await challenged(service, merchant, make_request)
    bank.answer_challenge(payment.id, passed=False)

    finished = await service.finish_authentication(payment.id)

    assert finished is not None
    assert (finished.status, finished.decline_reason) == (
        PaymentStatus.FAILED,
        "authentication_failed",
    )
    assert bank.deposits == []


async def test_coming_back_before_answering_changes_nothing(
    service: PaymentService, bank: FakeBank, merchant: Merchant, make_request: MakeRequest
) -> None:
    payment = await challenged(service, merchant, make_request)

    finished = await service.finish_authentication(payment.id)

    assert finished is not None
    assert finished.status is PaymentStatus.REQUIRES_ACTION
    assert bank.deposits == []


async def test_a_return_the_bank_cannot_answer_leaves_the_payment_waiting(
    service: PaymentService, bank: FakeBank, merchant: Merchant, make_request: MakeRequest
) -> None:
    payment = await challenged(service, merchant, make_request)
    bank.answer_challenge(payment.id, passed=True)
    bank.authentication_fault = BankFault.UNCERTAIN

    finished = await service.finish_authentication(payment.id)

    assert finished is not None
    assert finished.status is PaymentStatus.REQUIRES_ACTION
    assert bank.deposits == []


async def test_an_unknown_payment_is_none(service: PaymentService) -> None:
    assert await service.finish_authentication("no-such-payment") is None


async def test_a_frictionless_card_is_authenticated_and_charged_at_once(
    service: PaymentService, bank: FakeBank, merchant: Merchant, make_request: MakeRequest
) -> None:
    request = make_request(pan=FRICTIONLESS_CARD, three_d_secure_return_url=RETURN_URL)

    payment = (await service.create(merchant, request, None)).payment

    assert payment.status is PaymentStatus.SUCCEEDED
    assert payment.three_d_secure is not None
    assert (payment.three_d_secure.flow, payment.three_d_secure.result) == (
        "frictionless",
        AuthenticationResult.AUTHENTICATED,
    )
    assert bank.deposit_authentications == {payment.id: f"auth-{payment.id}"}
    assert bank.deposits[0][1].cvv == "123"  # still in memory: sent along


async def test_a_card_not_enrolled_is_charged_as_without_3_d_secure(
    service: PaymentService, bank: FakeBank, merchant: Merchant, make_request: MakeRequest
) -> None:
    request = make_request(three_d_secure_return_url=RETURN_URL)

    payment = (await service.create(merchant, request, None)).payment

    assert payment.status is PaymentStatus.SUCCEEDED
    assert payment.three_d_secure is not None
    assert payment.three_d_secure.result is AuthenticationResult.NOT_ENROLLED
    assert bank.deposit_authentications == {payment.id: None}


async def test_without_a_return_url_a_challenge_card_is_declined_by_the_bank(
    service: PaymentService, bank: FakeBank, merchant: Merchant, make_request: MakeRequest
) -> None:
    payment = (await service.create(merchant, make_request(pan=CHALLENGE_CARD), None)).payment

    assert (payment.status, payment.decline_reason) == (
        PaymentStatus.FAILED,
        "authentication_required",
    )
    assert payment.three_d_secure is None
    assert bank.authentications == {}


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (BankFault.NOT_SENT, "bank_unavailable"),
        (BankFault.UNCERTAIN, "bank_unavailable"),
        (BankFault.REJECTED, "bank_rejected"),
    ],
)
async def test_an_authentication_the_bank_does_not_answer_fails_without_a_deposit(
    service: PaymentService,
    bank: FakeBank,
    merchant: Merchant,
    make_request: MakeRequest,
    fault: BankFault,
    reason: str,
) -> None:
    bank.authentication_fault = fault

    payment = await challenged(service, merchant, make_request)

    assert (payment.status, payment.decline_reason) == (PaymentStatus.FAILED, reason)
    assert bank.deposits == []


async def test_an_authorization_only_payment_is_authorized_after_its_challenge(
    service: PaymentService, bank: FakeBank, merchant: Merchant, make_request: MakeRequest
) -> None:
    payment = await challenged(service, merchant, make_request, capture=False)
    bank.answer_challenge(payment.id, passed=True)

    finished = await service.finish_authentication(payment.id)

    assert finished is not None
    assert finished.status is PaymentStatus.AUTHORIZED
    assert bank.deposits[0][1].capture is False


async def test_production_takes_only_an_https_return_url(
    make_payment_service: MakePaymentService,
    bank: FakeBank,
    merchant: Merchant,
    make_request: MakeRequest,
) -> None:
    service = make_payment_service(bank)
    service._policy = replace(service._policy, https_return_urls=True)
    request = make_request(three_d_secure_return_url="http://shop.example/back")

    with pytest.raises(InvalidRequest) as refused:
        await service.create(merchant, request, None)

    assert [(error.field, error.message) for error in refused.value.errors or []] == [
        ("three_d_secure.return_url", "must be an https URL")
    ]
    assert bank.authentications == {}


async def test_a_challenge_left_unanswered_fails_at_its_deadline(
    service: PaymentService,
    bank: FakeBank,
    clock: FakeClock,
    merchant: Merchant,
    make_request: MakeRequest,
    make_reconciler: MakeReconciler,
) -> None:
    payment = await challenged(service, merchant, make_request)
    reconciler = make_reconciler(bank)

    clock.advance(CHALLENGE_TTL.total_seconds() - 1)
    assert await reconciler.expire_challenges() == 0
    clock.advance(2)
    assert await reconciler.expire_challenges() == 1

    expired = await service.get(merchant, payment.id)
    assert (expired.status, expired.decline_reason) == (
        PaymentStatus.FAILED,
        "authentication_expired",
    )
    assert bank.deposits == []
    bank.answer_challenge(payment.id, passed=True)  # too late: nothing changes any more
    assert (await service.finish_authentication(payment.id)) == expired


async def test_a_shopper_who_authenticated_and_never_came_back_is_charged_by_the_reconciler(
    service: PaymentService,
    bank: FakeBank,
    clock: FakeClock,
    merchant: Merchant,
    make_request: MakeRequest,
    make_reconciler: MakeReconciler,
) -> None:
    payment = await challenged(service, merchant, make_request)
    bank.answer_challenge(payment.id, passed=True)

    clock.advance(CHALLENGE_TTL.total_seconds() + 1)
    assert await make_reconciler(bank).expire_challenges() == 1

    assert (await service.get(merchant, payment.id)).status is PaymentStatus.SUCCEEDED
    assert len(bank.deposits) == 1


async def test_a_deposit_lost_after_the_challenge_is_reconciled_from_the_bank(
    service: PaymentService,
    bank: FakeBank,
    clock: FakeClock,
    merchant: Merchant,
    make_request: MakeRequest,
    make_reconciler: MakeReconciler,
) -> None:
    payment = await challenged(service, merchant, make_request)
    bank.answer_challenge(payment.id, passed=True)
    clock.advance(600)  # long after creation: the grace counts from the deposit
    bank.fault = BankFault.UNCERTAIN  # charged, answer lost

    finished = await service.finish_authentication(payment.id)
    assert finished is not None
    assert finished.status is PaymentStatus.PROCESSING
    bank.fault = None
    clock.advance(5)
    await make_reconciler(bank).reconcile_due_payments()

    assert (await service.get(merchant, payment.id)).status is PaymentStatus.SUCCEEDED
    assert len(bank.deposits) == 1
