"""The app factory: the one place where settings, storage, bank and routes are wired."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from datetime import timedelta

from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig

from payment_gateway.api.body_limit import BodySizeLimitMiddleware
from payment_gateway.api.dependencies import Services
from payment_gateway.api.docs import install_docs
from payment_gateway.api.problems import install_error_handlers
from payment_gateway.api.routes import health_router, payments_router
from payment_gateway.api.security_headers import SecurityHeadersMiddleware
from payment_gateway.bank.http import HttpBankAdapter
from payment_gateway.config import Settings
from payment_gateway.logging_setup import configure_logging
from payment_gateway.observability import ObservabilityMiddleware, metrics_endpoint
from payment_gateway.service.merchants import MerchantService
from payment_gateway.service.payments import PaymentPolicy, PaymentService
from payment_gateway.service.ports import BankAdapter
from payment_gateway.service.reconcile import ReconcilePolicy, Reconciler
from payment_gateway.service.retention import CardDataEraser, RetentionPolicy
from payment_gateway.storage.database import create_engine
from payment_gateway.storage.group_commit import GroupCommitRecorder
from payment_gateway.storage.migrate import migrate
from payment_gateway.storage.unit_of_work import SqlUnitOfWorkFactory
from payment_gateway.storage.vault import CardVault

log = logging.getLogger(__name__)

DESCRIPTION = """Card payments for merchants.

Authenticate with `Authorization: Bearer <API key>`. Amounts are integers in the currency's
minor unit. Send an `Idempotency-Key` to retry safely. Errors are RFC 9457 problem+json.
"""


NO_OPENTELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}


def create_app(
    settings: Settings | None = None,
    *,
    bank: BankAdapter | None = None,
    run_reconciler: bool = True,
) -> FastAPI:
    settings = settings or Settings()
    configure_logging(settings.log_level, settings.effective_log_format)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(
            settings.effective_database_url, pool_size=settings.database_pool_size
        )
        if settings.auto_migrate:
            await migrate(engine)
        uow = SqlUnitOfWorkFactory(engine)
        http_bank = None
        if bank is None:
            http_bank = HttpBankAdapter(
                settings.bank_url,
                settings.bank_timeout_seconds,
                max_connections=settings.bank_max_connections,
                api_key=settings.bank_api_key.get_secret_value() or None,
            )
        bank_adapter: BankAdapter = bank or http_bank  # type: ignore[assignment]
        recorder = GroupCommitRecorder(uow)
        payments = PaymentService(
            uow,
            bank_adapter,
            CardVault(settings.encryption_keys),
            settings.idempotency_key_bytes,
            PaymentPolicy(
                idempotency_ttl=timedelta(seconds=settings.idempotency_ttl_seconds),
                in_flight=timedelta(seconds=settings.in_flight_seconds),
                first_reconcile_delay=timedelta(seconds=settings.reconcile_interval_seconds),
                # A request still sending must stay inside the in-flight window (409 to its
                # retries, no reconciler inquiry yet): past this, it sends nothing.
                max_send_delay=timedelta(
                    seconds=max(settings.in_flight_seconds - settings.bank_timeout_seconds - 1, 1)
                ),
            ),
            recorder=recorder,
        )
        merchants = MerchantService(uow, cache_seconds=settings.merchant_cache_seconds)
        if settings.seed_demo_merchants:
            await merchants.seed_demo_merchants()
        elif settings.is_production:
            await merchants.revoke_demo_keys()
        app.state.services = Services(payments=payments, merchants=merchants, uow=uow)
        reconciler = Reconciler(
            uow,
            bank_adapter,
            ReconcilePolicy(
                interval_seconds=settings.reconcile_interval_seconds,
                batch_size=settings.reconcile_batch_size,
                not_found_grace=timedelta(seconds=settings.not_found_grace_seconds),
                # An inquiry is bounded by the bank timeout: the claim must outlive it.
                lease_seconds=settings.bank_timeout_seconds + 1,
                max_backoff_seconds=settings.reconcile_max_backoff_seconds,
                idempotency_ttl=timedelta(seconds=settings.idempotency_ttl_seconds),
            ),
        )
        app.state.reconciler = reconciler
        eraser = CardDataEraser(
            uow, RetentionPolicy(retention=timedelta(days=settings.card_data_retention_days))
        )
        task = asyncio.create_task(reconciler.run_forever(eraser)) if run_reconciler else None
        # Everything built so far lives as long as the process: keep it out of the garbage
        # collector's full passes, which otherwise walk it all again and again under load.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await recorder.aclose()
            if http_bank is not None:
                await http_bank.aclose()
            await uow.dispose()

    app = FastAPI(
        title="Payment Gateway",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        # Metrics are Prometheus (/metrics). FastAPI's OpenTelemetry hook would otherwise look
        # up the global OTel providers (and the environment) on every request, for nothing.
        telemetry=NO_OPENTELEMETRY,
    )
    install_error_handlers(app)
    install_docs(app)
    app.include_router(payments_router)
    app.include_router(health_router)
    app.add_route("/metrics", metrics_endpoint, include_in_schema=False)
    app.add_middleware(BodySizeLimitMiddleware)
    app.add_middleware(SecurityHeadersMiddleware)  # around the 413 too
    app.add_middleware(ObservabilityMiddleware)  # outermost: sees every request and answer
    return app


def __getattr__(name: str) -> FastAPI:
    # `uvicorn payment_gateway.main:app` builds the app on first access, so importing this
    # module (tests, tools) does not read the environment or configure logging.
    if name == "app":
        application = create_app()
        globals()["app"] = application
        return application
    raise AttributeError(name)
