"""The one place where settings become a wired gateway: for the app, the CLI and jobs alike.

`build_services(settings)` opens the database (migrating it when AUTO_MIGRATE is on), checks
that the secrets are the ones the data was written under, and wires the use cases to the SQL
storage and the HTTP bank. Tests pass their own bank (`bank=`) and keep everything else real.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta

from payment_gateway.bank.http import HttpBankAdapter
from payment_gateway.config import Settings
from payment_gateway.domain.deliveries import DeliverySchedule
from payment_gateway.service.checkout import CheckoutPolicy, CheckoutService
from payment_gateway.service.delivery import DeliveryPolicy, WebhookDelivery
from payment_gateway.service.group_commit import GroupCommitRecorder
from payment_gateway.service.merchants import MerchantService
from payment_gateway.service.operations import OperationPolicy, PaymentOperations
from payment_gateway.service.payments import PaymentPolicy, PaymentService
from payment_gateway.service.ports import BankAdapter
from payment_gateway.service.reconcile import ReconcilePolicy, Reconciler
from payment_gateway.service.recording import TransactionalRecorder
from payment_gateway.service.retention import CardDataEraser, RetentionPolicy
from payment_gateway.service.webhooks import WebhookService
from payment_gateway.storage.database import create_engine
from payment_gateway.storage.key_checks import verify_key_checks
from payment_gateway.storage.migrate import migrate
from payment_gateway.storage.unit_of_work import SqlUnitOfWorkFactory
from payment_gateway.storage.vault import CardVault
from payment_gateway.webhooks.addresses import UrlGuard
from payment_gateway.webhooks.sender import HttpWebhookSender


@dataclass(slots=True)
class Services:
    """Everything the entry points use, built once per process."""

    settings: Settings
    uow: SqlUnitOfWorkFactory
    vault: CardVault
    payments: PaymentService
    operations: PaymentOperations
    merchants: MerchantService
    reconciler: Reconciler
    card_data_eraser: CardDataEraser
    recorder: GroupCommitRecorder
    webhooks: WebhookService
    delivery: WebhookDelivery
    checkout: CheckoutService
    _webhook_sender: HttpWebhookSender = field(repr=False)
    _http_bank: HttpBankAdapter | None = field(default=None, repr=False)

    async def aclose(self) -> None:
        await self.recorder.aclose()  # the batch being written: its requests wait for it
        if self._http_bank is not None:
            await self._http_bank.aclose()
        await self._webhook_sender.aclose()
        await self.uow.dispose()


def payment_policy(settings: Settings) -> PaymentPolicy:
    return PaymentPolicy(
        idempotency_ttl=timedelta(seconds=settings.idempotency_ttl_seconds),
        in_flight=timedelta(seconds=settings.in_flight_seconds),
        first_reconcile_delay=timedelta(seconds=settings.reconcile_interval_seconds),
        max_send_delay=timedelta(seconds=settings.max_send_delay_seconds),
        authorization_ttl=timedelta(seconds=settings.authorization_ttl_seconds),
        challenge_ttl=timedelta(seconds=settings.challenge_ttl_seconds),
        public_url=settings.public_url,
        https_return_urls=settings.is_production,
    )


def operation_policy(settings: Settings) -> OperationPolicy:
    return OperationPolicy(
        in_flight=timedelta(seconds=settings.in_flight_seconds),
        first_reconcile_delay=timedelta(seconds=settings.reconcile_interval_seconds),
    )


def reconcile_policy(settings: Settings) -> ReconcilePolicy:
    return ReconcilePolicy(
        interval_seconds=settings.reconcile_interval_seconds,
        batch_size=settings.reconcile_batch_size,
        not_found_grace=timedelta(seconds=settings.not_found_grace_seconds),
        lease_seconds=settings.reconcile_lease_seconds,
        max_backoff_seconds=settings.reconcile_max_backoff_seconds,
        idempotency_ttl=timedelta(seconds=settings.idempotency_ttl_seconds),
        authorization_ttl=timedelta(seconds=settings.authorization_ttl_seconds),
    )


def checkout_policy(settings: Settings) -> CheckoutPolicy:
    return CheckoutPolicy(
        public_url=settings.public_url,
        allow_http_urls=not settings.is_production,
        wait_for_first_post=timedelta(seconds=settings.in_flight_seconds),
    )


def delivery_policy(settings: Settings) -> DeliveryPolicy:
    return DeliveryPolicy(
        schedule=DeliverySchedule(
            retry_delays_seconds=settings.webhook_retry_delay_seconds,
            jitter=settings.webhook_retry_jitter,
            disable_after=timedelta(seconds=settings.webhook_disable_after_seconds),
        ),
        lease_seconds=settings.webhook_lease_seconds,
        poll_interval_seconds=settings.webhook_poll_interval_seconds,
        event_retention=timedelta(days=settings.event_retention_days),
    )


async def build_services(
    settings: Settings, bank: BankAdapter | None = None, *, pool_size: int | None = None
) -> Services:
    engine = create_engine(
        settings.effective_database_url, pool_size=pool_size or settings.database_pool_size
    )
    uow = SqlUnitOfWorkFactory(engine)
    try:
        if settings.auto_migrate:
            await migrate(engine, at_start=True)
        vault = CardVault(settings.encryption_keys)
        await verify_key_checks(engine, vault, settings.idempotency_key_bytes)
    except BaseException:
        await uow.dispose()
        raise
    http_bank = None
    if bank is None:
        bank = http_bank = HttpBankAdapter(
            settings.bank_url,
            settings.bank_timeout_seconds,
            max_connections=settings.bank_max_connections,
            api_key=settings.bank_api_key.get_secret_value() or None,
        )
    url_guard = UrlGuard(allow_private=settings.webhook_private_urls_allowed)
    sender = HttpWebhookSender(url_guard, timeout_seconds=settings.webhook_timeout_seconds)
    delivery = WebhookDelivery(uow, sender, vault, delivery_policy(settings))
    single = TransactionalRecorder(uow, on_events=delivery.wake)
    recorder = GroupCommitRecorder(single)
    operations = PaymentOperations(
        uow, single, bank, settings.idempotency_key_bytes, operation_policy(settings)
    )
    payments = PaymentService(
        uow,
        bank,
        vault,
        settings.idempotency_key_bytes,
        payment_policy(settings),
        recorder=recorder,
    )
    return Services(
        settings=settings,
        uow=uow,
        vault=vault,
        payments=payments,
        merchants=MerchantService(uow, cache_seconds=settings.merchant_cache_seconds),
        operations=operations,
        reconciler=Reconciler(
            uow, recorder, bank, operations, payments, reconcile_policy(settings)
        ),
        card_data_eraser=CardDataEraser(
            uow, RetentionPolicy(retention=timedelta(days=settings.card_data_retention_days))
        ),
        recorder=recorder,
        webhooks=WebhookService(uow, vault, url_guard),
        delivery=delivery,
        checkout=CheckoutService(uow, single, payments, checkout_policy(settings)),
        _webhook_sender=sender,
        _http_bank=http_bank,
    )


@contextlib.asynccontextmanager
async def services_for(
    settings: Settings, bank: BankAdapter | None = None, *, pool_size: int | None = None
) -> AsyncIterator[Services]:
    """`build_services` for the length of a block, closed afterwards (CLI commands, jobs)."""
    services = await build_services(settings, bank, pool_size=pool_size)
    try:
        yield services
    finally:
        await services.aclose()
