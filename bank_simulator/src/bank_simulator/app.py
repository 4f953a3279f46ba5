"""The bank simulator ASGI application factory."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import quote

from fastapi import FastAPI, Request
from pydantic import BaseModel, ValidationError
from starlette.responses import Response

from bank_simulator.auth import BearerKeyMiddleware
from bank_simulator.bodies import read_body
from bank_simulator.cards import Status
from bank_simulator.challenge import install_challenge_pages
from bank_simulator.config import Settings
from bank_simulator.ledger import (
    AmountTooLarge,
    Clock,
    DepositNotFound,
    DepositStatusConflict,
    Ledger,
    Operation,
    OperationKind,
    OperationRefused,
    RecordResult,
    operation_view,
)
from bank_simulator.metrics import AUTHENTICATIONS, OPERATIONS, install_metrics
from bank_simulator.problems import (
    JSONBytesResponse,
    ProblemResponse,
    install_exception_handlers,
    problem,
    validation_problem,
)
from bank_simulator.schemas import (
    AuthenticationOut,
    AuthenticationRequest,
    DepositRequest,
    OperationOut,
    OperationRequest,
    OperationTarget,
    Problem,
    TransactionOut,
    VoidRequest,
    inline_schema,
)
from bank_simulator.threeds import authentication_view

logger = logging.getLogger("bank_simulator")

_HEALTHY = b'{"status":"ok"}'
_PROBLEM = {"model": Problem, "content": {"application/problem+json": {}}}

RequestModel = TypeVar("RequestModel", bound=BaseModel)
OperationModel = TypeVar("OperationModel", bound=OperationTarget)
Apply = Callable[[OperationModel], tuple[RecordResult, Operation]]

# Each operation's path segment and what it does to a deposit, for messages.
_COLLECTIONS = {
    OperationKind.CAPTURE: "captures",
    OperationKind.VOID: "voids",
    OperationKind.REFUND: "refunds",
}
_DONE = {
    OperationKind.CAPTURE: "captured",
    OperationKind.VOID: "voided",
    OperationKind.REFUND: "refunded",
}
_REQUIRED_STATUS = {Status.AUTHORIZED: "an authorized", Status.SUCCEEDED: "a captured (succeeded)"}


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


async def _parse(
    request: Request, model: type[RequestModel], max_body: int
) -> RequestModel | ProblemResponse:
    """The validated body, or the 415/413/422 problem that refuses it."""
    content_type = request.headers.get("content-type")
    if content_type is not None and not _is_json(content_type):
        return problem(415, "Send the request as application/json.")
    body = await read_body(request, max_body)
    if body is None:
        return problem(413, f"The body must not exceed {max_body} bytes.")
    try:
        # pydantic-core parses the JSON itself: malformed JSON is a 422 like any other.
        return model.model_validate_json(body)
    except ValidationError as exc:
        return validation_problem(
            exc.errors(include_url=False, include_context=False, include_input=False)
        )


def _unavailable() -> ProblemResponse:
    return problem(
        503,
        "The bank is temporarily unavailable (simulated); nothing was recorded.",
        slug="bank-unavailable",
        headers={"Retry-After": "1"},
    )


def _reference_conflict(what: str) -> ProblemResponse:
    return problem(
        409,
        f"This reference was already used for {what}.",
        slug="reference-conflict",
        errors=[{"field": "reference", "message": "already used for another request"}],
    )


def _refusal(kind: OperationKind, exc: OperationRefused) -> ProblemResponse:
    """The problem answering an operation the bank's rules refuse."""
    if isinstance(exc, DepositStatusConflict):
        detail = (
            f"The deposit is {exc.status.value}: only {_REQUIRED_STATUS[exc.required]} "
            f"deposit can be {_DONE[kind]}."
        )
        return problem(
            409,
            detail,
            slug="deposit-status-conflict",
            errors=[{"field": "deposit_reference", "message": f"the deposit is {exc.status}"}],
        )
    if isinstance(exc, AmountTooLarge):
        limit = "authorized" if kind is OperationKind.CAPTURE else "left to refund"
        return problem(
            422,
            f"The amount exceeds what can be {_DONE[kind]}: {exc.available} is {limit}.",
            slug="amount-too-large",
            errors=[{"field": "amount", "message": f"must be at most {exc.available}"}],
        )
    assert isinstance(exc, DepositNotFound)
    return problem(
        404,
        "No deposit has this reference.",
        slug="deposit-not-found",
        errors=[{"field": "deposit_reference", "message": "no deposit has this reference"}],
    )


def _request_body(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI of a route that reads its own body (so that 413/415/422 stay ours)."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": inline_schema(model)}},
        }
    }


def _create_responses(model: type[BaseModel], repeat: str, *statuses: int) -> dict[int | str, Any]:
    """OpenAPI answers of a create route that is idempotent on its reference."""
    answers: dict[int | str, Any] = {
        200: {"model": model, "description": repeat},
        201: {"model": model, "description": "Recorded"},
    }
    return answers | dict.fromkeys(sorted({409, 413, 415, 422, 503, *statuses}), _PROBLEM)


def create_app(settings: Settings | None = None, *, clock: Clock = time.monotonic) -> FastAPI:
    """Build the app. Configuration comes from ``settings`` or else the environment."""
    settings = settings if settings is not None else Settings()
    configure_logging(settings.log_level_number)
    ledger = Ledger(settings.max_transactions, settings.pending_settle_seconds, clock)
    failure_rate = settings.failure_rate
    latency = settings.latency_ms / 1000
    max_body = settings.max_body_bytes
    public_url = settings.public_url

    app = FastAPI(
        title="Bank simulator",
        version="0.2.0",
        summary="Stand-in acquiring bank: test cards with fixed outcomes; capture, void, refund; "
        "3-D Secure as the issuer's access control server.",
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

    def simulated_outage() -> bool:
        return bool(failure_rate) and random.random() < failure_rate

    @app.post(
        "/api/v1/deposit",
        status_code=201,
        response_model=None,
        summary="Charge or authorize a card (idempotent on reference)",
        responses=_create_responses(TransactionOut, "Repeat: the first transaction"),
        openapi_extra=_request_body(DepositRequest),
    )
    async def deposit(request: Request) -> Response:
        payload = await _parse(request, DepositRequest, max_body)
        if isinstance(payload, ProblemResponse):
            return payload
        if payload.card.cvv is None and payload.three_d_secure is None:
            message = "is required unless three_d_secure names an authentication"
            return validation_problem([{"loc": ("card", "cvv"), "msg": message}])
        if simulated_outage():
            logger.info("deposit reference=%r rejected: simulated failure", payload.reference)
            return _unavailable()

        # Atomic check-and-insert: no await between the lookup and the write.
        result, transaction = ledger.record(
            payload.reference,
            payload.card.number,
            payload.amount,
            payload.currency,
            payload.capture,
            payload.three_d_secure.authentication_id if payload.three_d_secure else None,
        )
        if result is RecordResult.CONFLICT:
            logger.info("deposit reference=%r conflict", payload.reference)
            return _reference_conflict(
                "a deposit with a different card, amount, currency or capture"
            )
        view = ledger.view(transaction)
        logger.info(
            "deposit reference=%r status=%s amount=%d currency=%s capture=%s %s",
            transaction.reference,
            view["status"],
            transaction.amount,
            transaction.currency,
            transaction.capture,
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

    async def operate(
        kind: OperationKind,
        request: Request,
        model: type[OperationModel],
        apply: Apply[OperationModel],
    ) -> tuple[str, Response]:
        """Answer a capture, void or refund request; also the metrics outcome of the answer."""
        payload = await _parse(request, model, max_body)
        if isinstance(payload, ProblemResponse):
            return "rejected", payload
        if simulated_outage():
            logger.info("%s reference=%r rejected: simulated failure", kind, payload.reference)
            return "unavailable", _unavailable()
        try:
            # Atomic check-and-apply: no await between reading the deposit and changing it.
            result, operation = apply(payload)
        except OperationRefused as exc:
            logger.info(
                "%s reference=%r deposit=%r refused: %s",
                kind,
                payload.reference,
                payload.deposit_reference,
                exc,
            )
            return "refused", _refusal(kind, exc)
        if result is RecordResult.CONFLICT:
            logger.info("%s reference=%r conflict", kind, operation.reference)
            return "conflict", _reference_conflict(
                "another operation (other kind, deposit or amount)"
            )
        logger.info(
            "%s reference=%r deposit=%r amount=%d status=%s %s",
            kind,
            operation.reference,
            operation.deposit_reference,
            operation.amount,
            operation.outcome.status,
            result.value,
        )
        if latency:
            await asyncio.sleep(latency)  # after recording: a client that gave up got it done
        created = result is RecordResult.CREATED
        location = f"/api/v1/{_COLLECTIONS[kind]}/" + quote(operation.reference, safe="")
        response = JSONBytesResponse(
            operation_view(operation),
            status_code=201 if created else 200,
            headers={"Location": location},
        )
        return (operation.outcome.status.value if created else "repeat"), response

    def add_operation_routes(
        kind: OperationKind,
        model: type[OperationModel],
        apply: Apply[OperationModel],
        summary: str,
    ) -> None:
        collection = f"/api/v1/{_COLLECTIONS[kind]}"

        @app.post(
            collection,
            status_code=201,
            response_model=None,
            summary=summary + " (idempotent on reference)",
            operation_id=f"create_{kind}",
            responses=_create_responses(OperationOut, "Repeat: the first answer", 404),
            openapi_extra=_request_body(model),
        )
        async def create(request: Request) -> Response:
            outcome, response = await operate(kind, request, model, apply)
            OPERATIONS.labels(kind.value, outcome).inc()
            return response

        @app.get(
            collection + "/{reference:path}",
            response_model=None,
            summary=f"A {kind} as recorded",
            operation_id=f"get_{kind}",
            responses={200: {"model": OperationOut}, 404: _PROBLEM},
        )
        async def read(reference: str) -> Response:
            operation = ledger.operation(kind, reference)
            if operation is None:
                return problem(404, f"No {kind} has this reference.", slug=f"{kind}-not-found")
            return JSONBytesResponse(operation_view(operation))

    add_operation_routes(
        OperationKind.CAPTURE,
        OperationRequest,
        lambda p: ledger.capture(p.reference, p.deposit_reference, p.amount),
        "Capture an authorized deposit, in full or in part",
    )
    add_operation_routes(
        OperationKind.VOID,
        VoidRequest,
        lambda p: ledger.void(p.reference, p.deposit_reference),
        "Release an authorized deposit",
    )
    add_operation_routes(
        OperationKind.REFUND,
        OperationRequest,
        lambda p: ledger.refund(p.reference, p.deposit_reference, p.amount),
        "Refund part or all of a captured deposit",
    )

    @app.post(
        "/api/v1/3ds/authentications",
        status_code=201,
        response_model=None,
        summary="Start a 3-D Secure authentication of a card and amount (idempotent on reference)",
        responses=_create_responses(AuthenticationOut, "Repeat: the authentication now"),
        openapi_extra=_request_body(AuthenticationRequest),
    )
    async def create_authentication(request: Request) -> Response:
        payload = await _parse(request, AuthenticationRequest, max_body)
        if isinstance(payload, ProblemResponse):
            AUTHENTICATIONS.labels("rejected").inc()
            return payload
        if simulated_outage():
            logger.info("3ds reference=%r rejected: simulated failure", payload.reference)
            AUTHENTICATIONS.labels("unavailable").inc()
            return _unavailable()
        # Atomic check-and-insert, as for deposits.
        result, authentication = ledger.authenticate(
            payload.reference,
            payload.card.number,
            payload.amount,
            payload.currency,
            payload.return_url,
        )
        if result is RecordResult.CONFLICT:
            logger.info("3ds reference=%r conflict", payload.reference)
            AUTHENTICATIONS.labels("conflict").inc()
            return _reference_conflict(
                "an authentication with a different card, amount, currency or return_url"
            )
        created = result is RecordResult.CREATED
        AUTHENTICATIONS.labels(authentication.status.value if created else "repeat").inc()
        logger.info(
            "3ds reference=%r id=%s status=%s amount=%d currency=%s %s",
            authentication.reference,
            authentication.id,
            authentication.status,
            authentication.amount,
            authentication.currency,
            result.value,
        )
        if latency:
            await asyncio.sleep(latency)  # after recording, as for deposits
        location = "/api/v1/3ds/authentications/" + quote(authentication.reference, safe="")
        return JSONBytesResponse(
            authentication_view(authentication, public_url),
            status_code=201 if created else 200,
            headers={"Location": location},
        )

    @app.get(
        "/api/v1/3ds/authentications/{reference:path}",
        response_model=None,
        summary="A 3-D Secure authentication as it stands now (the result, read server-side)",
        responses={200: {"model": AuthenticationOut}, 404: _PROBLEM},
    )
    async def get_authentication(reference: str) -> Response:
        authentication = ledger.authentication(reference)
        if authentication is None:
            return problem(
                404, "No authentication has this reference.", slug="authentication-not-found"
            )
        return JSONBytesResponse(authentication_view(authentication, public_url))

    install_challenge_pages(app, ledger)

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
