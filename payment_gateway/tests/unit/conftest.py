"""Fixtures for the gateway's unit tests: in-memory fakes, an injectable clock, no I/O."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any, Protocol, TypedDict, Unpack

import pytest
from cryptography.fernet import Fernet
from fakes import FakeBank, FakeClock, FakeStore, FakeUnitOfWorkFactory
from payment_gateway.domain.merchant import Merchant
from payment_gateway.domain.payment import PaymentRequest
from payment_gateway.service.merchants import MerchantService
from payment_gateway.service.operations import OperationPolicy, PaymentOperations
from payment_gateway.service.payments import PaymentPolicy, PaymentService
from payment_gateway.service.ports import BankAdapter
from payment_gateway.service.reconcile import ReconcilePolicy, Reconciler
from payment_gateway.service.recording import TransactionalRecorder
from payment_gateway.storage.vault import CardVault

IN_FLIGHT = timedelta(seconds=8)
MAX_SEND_DELAY = timedelta(seconds=4)  # in-flight 8 s - bank timeout 3 s - 1 s
IDEMPOTENCY_TTL = timedelta(hours=24)
FIRST_RECONCILE_DELAY = timedelta(seconds=2)
NOT_FOUND_GRACE = timedelta(seconds=30)
MAX_BACKOFF_SECONDS = 60.0
AUTHORIZATION_TTL = timedelta(days=7)
OPERATION_POLICY = OperationPolicy(
    in_flight=IN_FLIGHT,
    first_reconcile_delay=FIRST_RECONCILE_DELAY,
)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def uow_factory(store: FakeStore) -> FakeUnitOfWorkFactory:
    return FakeUnitOfWorkFactory(store)


@pytest.fixture
def bank() -> FakeBank:
    return FakeBank()


@pytest.fixture
def vault() -> CardVault:
    return CardVault([Fernet.generate_key()])


@pytest.fixture
def payment_policy() -> PaymentPolicy:
    return PaymentPolicy(
        idempotency_ttl=IDEMPOTENCY_TTL,
        in_flight=IN_FLIGHT,
        first_reconcile_delay=FIRST_RECONCILE_DELAY,
        max_send_delay=MAX_SEND_DELAY,
    )


@pytest.fixture
def reconcile_policy() -> ReconcilePolicy:
    return ReconcilePolicy(
        interval_seconds=1.0,
        batch_size=100,
        not_found_grace=NOT_FOUND_GRACE,
        lease_seconds=5.0,
        max_backoff_seconds=MAX_BACKOFF_SECONDS,
        idempotency_ttl=IDEMPOTENCY_TTL,
        authorization_ttl=AUTHORIZATION_TTL,
    )


class MakePaymentService(Protocol):
    def __call__(self, bank: BankAdapter, *, hash_key: bytes = ...) -> PaymentService: ...


MakeReconciler = Callable[[BankAdapter], Reconciler]


class RequestFields(TypedDict, total=False):
    """The fields of a PaymentRequest, any of which make_request may change."""

    pan: str
    cvv: str | None
    expiry_month: int
    expiry_year: int
    holder_name: str | None
    amount: int
    currency: str
    reference: str | None
    capture: bool
    three_d_secure_return_url: str | None


class MakeRequest(Protocol):
    def __call__(self, **changes: Unpack[RequestFields]) -> PaymentRequest: ...


@pytest.fixture
def make_payment_service(
    uow_factory: FakeUnitOfWorkFactory,
    vault: CardVault,
    payment_policy: PaymentPolicy,
    clock: FakeClock,
) -> MakePaymentService:
    def make(bank: BankAdapter, *, hash_key: bytes = b"unit-test-hash-key") -> PaymentService:
        return PaymentService(uow_factory, bank, vault, hash_key, payment_policy, clock=clock)

    return make


@pytest.fixture
def payment_service(make_payment_service: MakePaymentService, bank: FakeBank) -> PaymentService:
    return make_payment_service(bank)


@pytest.fixture
def make_reconciler(
    uow_factory: FakeUnitOfWorkFactory,
    reconcile_policy: ReconcilePolicy,
    clock: FakeClock,
    make_payment_service: MakePaymentService,
) -> MakeReconciler:
    def make(bank: BankAdapter) -> Reconciler:
        recorder = TransactionalRecorder(uow_factory)
        operations = PaymentOperations(
            uow_factory, recorder, bank, b"unit-test-hash-key", OPERATION_POLICY, clock=clock
        )
        payments = make_payment_service(bank)
        return Reconciler(
            uow_factory, recorder, bank, operations, payments, reconcile_policy, clock=clock
        )

    return make


@pytest.fixture
def merchant_service(uow_factory: FakeUnitOfWorkFactory, clock: FakeClock) -> MerchantService:
    return MerchantService(uow_factory, cache_seconds=0, clock=clock)


@pytest.fixture
def merchant() -> Merchant:
    return Merchant("merchant-1", "merchant_one")


@pytest.fixture
def other_merchant() -> Merchant:
    return Merchant("merchant-2", "merchant_two")


@pytest.fixture
def make_request() -> MakeRequest:
    def make(**changes: Unpack[RequestFields]) -> PaymentRequest:
        values: dict[str, Any] = {
            "pan": "4242424242424242",
            "cvv": "123",
            "expiry_month": 12,
            "expiry_year": 2042,
            "holder_name": "John Doe",
            "amount": 1000,
            "currency": "USD",
            "reference": "order-1234",
        }
        values.update(changes)
        return PaymentRequest(**values)

    return make
