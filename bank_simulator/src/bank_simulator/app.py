"""The bank simulator ASGI application factory."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from urllib.parse import quote

from fastapi import FastAPI, Request
from pydantic import ValidationError
from starlette.responses import Response

from bank_simulator.auth import BearerKeyMiddleware
from bank_simulator.config import Settings
from bank_simulator.ledger import Clock, Ledger, RecordResult
from bank_simulator.metrics import install_metrics
from bank_simulator.problems import (
    JSONBytesResponse,
    install_exception_handlers,
    problem,
    validation_problem,
)
from bank_simulator.schemas import DepositRequest, Problem, TransactionOut, inline_schema

logger = logging.getLogger("bank_simulator")

_HEALTHY = b'{"status":"ok"}'
_PROBLEM = {"model": Problem, "content": {"application/problem+json": {}}}


def configure_logging(level: int) -> None:
    """Give the package logger a level, and a handler unless logging is already set up."""
    logger.setLevel(level)
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        logger.addHandler(handler)


def _is_json(content_type: str) -> bool:
    media_type = content_type.partition(";")[0].strip().lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The request body, or ``None`` when it is larger than ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def create_app(settings: Settings | None = None, *, clock: Clock = time.monotonic) -> FastAPI:
    """Build the app. Configuration comes from ``settings`` or else the environment."""
    settings = settings if settings is not None else Settings()
    configure_logging(settings.log_level_number)
    ledger = Ledger(settings.max_transactions, settings.pending_settle_seconds, clock)
    failure_rate = settings.failure_rate
    latency = settings.latency_ms / 1000
    max_body = settings.max_body_bytes

    app = FastAPI(
        title="Bank simulator",
        version="0.1.0",
        summary="Stand-in acquiring bank: test cards with fixed outcomes.",
        default_response_class=JSONBytesResponse,
        # No OpenTelemetry: FastAPI's hook would look up its providers on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.ledger = ledger
    install_exception_handlers(app)
    install_metrics(app)
    if settings.bank_api_key is not None and settings.bank_api_key.get_secret_value():
        app.add_middleware(BearerKeyMiddleware, api_key=settings.bank_api_key.get_secret_value())

    @app.post(
        "/api/v1/deposit",
        status_code=201,
        response_model=None,
        summary="Charge a card (idempotent on reference)",
        responses={
            200: {"model": TransactionOut, "description": "Repeat: the first transaction"},
            201: {"model": TransactionOut, "description": "Recorded"},
            409: _PROBLEM,
            413: _PROBLEM,
            415: _PROBLEM,
            422: _PROBLEM,
            503: _PROBLEM,
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": inline_schema(DepositRequest)}},
            }
        },
    )
    async def deposit(request: Request) -> Response:
        content_type = request.headers.get("content-type")
        if content_type is not None and not _is_json(content_type):
            return problem(415, "Send the deposit as application/json.")
        body = await _read_body(request, max_body)
        if body is None:
            return problem(413, f"The body must not exceed {max_body} bytes.")
        try:
            # pydantic-core parses the JSON itself: malformed JSON is a 422 like any other.
            payload = DepositRequest.model_validate_json(body)
        except ValidationError as exc:
            return validation_problem(
                exc.errors(include_url=False, include_context=False, include_input=False)
            )

        if failure_rate and random.random() < failure_rate:
            logger.info("deposit reference=%r rejected: simulated failure", payload.reference)
            return problem(
                503,
                "The bank is temporarily unavailable (simulated); nothing was recorded.",
                slug="bank-unavailable",
                headers={"Retry-After": "1"},
            )

        # Atomic check-and-insert: no await between the lookup and the write.
        result, transaction = ledger.record(
            payload.reference, payload.card.number, payload.amount, payload.currency
        )
        if result is RecordResult.CONFLICT:
            logger.info("deposit reference=%r conflict", payload.reference)
            return problem(
                409,
                "This reference was already used for a deposit with a different card, "
                "amount or currency.",
                slug="reference-conflict",
            )
        view = ledger.view(transaction)
        logger.info(
            "deposit reference=%r status=%s amount=%d currency=%s %s",
            transaction.reference,
            view["status"],
            transaction.amount,
            transaction.currency,
            result.value,
        )
        if latency:
            await asyncio.sleep(latency)  # after recording: a client that gave up was charged
            view = ledger.view(transaction)
        return JSONBytesResponse(
            view,
            status_code=201 if result is RecordResult.CREATED else 200,
            headers={"Location": "/api/v1/deposits/" + quote(transaction.reference, safe="")},
        )

    @app.get(
        "/api/v1/deposits/{reference:path}",
        response_model=None,
        summary="A deposit as it stands now",
        responses={200: {"model": TransactionOut}, 404: _PROBLEM},
    )
    async def get_deposit(reference: str) -> Response:
        transaction = ledger.get(reference)
        if transaction is None:
            return problem(404, "No deposit has this reference.", slug="deposit-not-found")
        return JSONBytesResponse(ledger.view(transaction))

    @app.get("/healthz", response_model=None, summary="Liveness")
    async def healthz() -> Response:
        return Response(_HEALTHY, media_type="application/json")

    logger.debug(
        "bank simulator configured: settle=%ss latency=%sms failure_rate=%s max_transactions=%s",
        settings.pending_settle_seconds,
        settings.latency_ms,
        settings.failure_rate,
        settings.max_transactions,
    )
    return app
