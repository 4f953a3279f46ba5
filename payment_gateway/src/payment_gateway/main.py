"""The app factory: the one place where settings, storage, bank and routes are wired."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig

from payment_gateway.api.body_limit import BodySizeLimitMiddleware
from payment_gateway.api.checkout import checkout_router
from payment_gateway.api.checkout_page import checkout_page_router
from payment_gateway.api.docs import install_docs
from payment_gateway.api.operations import operations_router
from payment_gateway.api.problems import install_error_handlers
from payment_gateway.api.rate_limit import create_rate_limiter
from payment_gateway.api.refused_keys import RefusedKeyMiddleware, RefusedKeys
from payment_gateway.api.request_context import RequestContextMiddleware
from payment_gateway.api.routes import health_router, payments_router
from payment_gateway.api.security_headers import SecurityHeadersMiddleware
from payment_gateway.api.three_d_secure import three_d_secure_router
from payment_gateway.api.webhooks import webhooks_router
from payment_gateway.bootstrap import build_services
from payment_gateway.config import Settings
from payment_gateway.logging_setup import configure_logging
from payment_gateway.metrics import start_metrics_server
from payment_gateway.service.ports import BankAdapter
from payment_gateway.service.storage_retry import retrying_storage

log = logging.getLogger(__name__)

DESCRIPTION = """Card payments for merchants.

Authenticate with `Authorization: Bearer <API key>`. Amounts are integers in the currency's
minor unit. Send an `Idempotency-Key` to retry safely. Errors are RFC 9457 problem+json.
Each API key is rate limited: over the limit, `429` with `Retry-After`.
Every status change is an event (`/api/v1/events`), POSTed to your webhook endpoints signed
by the Standard Webhooks specification: verify the raw body with its libraries.
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
    refused_keys = RefusedKeys()  # filled by the rate limiter, answered by its middleware

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = await build_services(settings, bank)
        # Both are safe to repeat: replicas starting together on two Galera nodes may
        # conflict over the same rows, and the loser runs again.
        if settings.seed_demo_merchants:
            await retrying_storage(services.merchants.seed_demo_merchants)
        elif settings.is_production:
            await retrying_storage(services.merchants.revoke_demo_keys)
        app.state.services = services
        app.state.rate_limiter = create_rate_limiter(settings, refused_keys)
        metrics = (
            start_metrics_server(settings.metrics_host, settings.metrics_port)
            if settings.metrics_port
            else None
        )
        tasks = []
        if run_reconciler:
            tasks.append(
                asyncio.create_task(
                    services.reconciler.run_forever(services.card_data_eraser, services.checkout)
                )
            )
            if settings.webhook_delivery_enabled:
                tasks.append(asyncio.create_task(services.delivery.run_forever()))
        # Everything built so far lives as long as the process: keep it out of the garbage
        # collector's full passes, which otherwise walk it all again and again under load.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if metrics is not None:
                metrics.close()
            if app.state.rate_limiter is not None:
                await app.state.rate_limiter.aclose()
            await services.aclose()

    app = FastAPI(
        title="Payment Gateway",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served by install_docs, from packaged assets
        redoc_url=None,
        openapi_url="/openapi.json" if settings.docs_enabled else None,
        # Metrics are Prometheus (on METRICS_PORT). FastAPI's OpenTelemetry hook would
        # otherwise look up the global OTel providers (and the environment) on every request.
        telemetry=NO_OPENTELEMETRY,
    )
    install_error_handlers(app)
    if settings.docs_enabled:
        install_docs(app)
    app.include_router(payments_router)
    app.include_router(operations_router)
    app.include_router(webhooks_router)
    app.include_router(three_d_secure_router)
    app.include_router(checkout_router)
    app.include_router(checkout_page_router)
    app.include_router(health_router)
    app.add_middleware(BodySizeLimitMiddleware)
    if settings.rate_limit_enabled:  # before routing and the body; inside ids and headers
        app.add_middleware(
            RefusedKeyMiddleware,
            refused=refused_keys,
            hold_seconds=settings.rate_limit_hold_seconds,
            max_held=settings.rate_limit_max_held,
            max_in_flight=settings.rate_limit_max_in_flight,
        )
    app.add_middleware(SecurityHeadersMiddleware)  # around the 413 too
    app.add_middleware(RequestContextMiddleware)  # outermost: sees every request and answer
    return app


def __getattr__(name: str) -> FastAPI:
    # `uvicorn payment_gateway.main:app` builds the app on first access, so importing this
    # module (tests, tools) does not read the environment or configure logging.
    if name == "app":
        application = create_app()
        globals()["app"] = application
        return application
    raise AttributeError(name)
