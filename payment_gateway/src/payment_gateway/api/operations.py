"""Routes after the charge: capture, cancel, refunds (docs/design.md, Capture and refunds)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from payment_gateway.api.dependencies import (
    MerchantDep,
    ServicesDep,
    services_and_merchant,
)
from payment_gateway.api.routes import (
    BODY_ERRORS,
    IDEMPOTENCY_KEY_DOCS,
    PAYMENTS_PATH,
    RATE_LIMITED_DOCS,
    idempotency_key_of,
    json_response,
    problem_doc,
    read_body,
)
from payment_gateway.api.schemas import (
    CaptureCreate,
    PaymentOut,
    RefundCreate,
    RefundList,
    RefundOut,
)
from payment_gateway.domain.operations import OperationStatus
from payment_gateway.service.documents import payment_document, refund_document
from payment_gateway.service.errors import BankDeclined, NotFound
from payment_gateway.service.operations import OperationResult

REFUNDS_PATH = "/api/v1/refunds"

operations_router = APIRouter(tags=["after the charge"])


def _body_docs(schema: str, *, required: bool) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": required,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
        },
        "security": [{"HTTPBearer": []}],
        "parameters": [IDEMPOTENCY_KEY_DOCS],
    }


_ERRORS: dict[int | str, dict[str, Any]] = {
    401: problem_doc("Missing, unknown or revoked API key"),
    404: problem_doc("No such payment for this merchant"),
    409: problem_doc(
        "The payment's status does not allow it (the detail says which it has), or a"
        " request with this Idempotency-Key is still in progress"
    ),
    422: problem_doc(
        "Invalid request (`errors` names each field), e.g. an amount above what is"
        " allowed, or an Idempotency-Key reused with another request"
    ),
    429: RATE_LIMITED_DOCS,
}


def _settlement_answer(result: OperationResult) -> Response:
    """200 once done, 202 while the bank's answer is awaited, 402 when the bank said no."""
    operation = result.operation
    if operation.status is OperationStatus.FAILED:
        raise BankDeclined(
            f"the bank did not {operation.kind.value} the payment: {operation.failure_reason};"
            " nothing changed"
        )
    status = 202 if operation.status is OperationStatus.PENDING else 200
    headers = {"Idempotent-Replayed": "true"} if result.replayed else {}
    return json_response(payment_document(result.payment), status, headers)


async def capture_payment(payment_id: str, request: Request) -> Response:
    """Capture an authorized payment, in full or in part (the rest is released)."""
    services, merchant = await services_and_merchant(request)
    idempotency_key = idempotency_key_of(request)
    body = await read_body(request, CaptureCreate, "the capture", optional=True)
    result = await services.operations.capture(merchant, payment_id, body.amount, idempotency_key)
    return _settlement_answer(result)


async def cancel_payment(payment_id: str, request: Request) -> Response:
    """Cancel an authorized payment: the hold on the card is released."""
    services, merchant = await services_and_merchant(request)
    idempotency_key = idempotency_key_of(request)
    result = await services.operations.cancel(merchant, payment_id, idempotency_key)
    return _settlement_answer(result)


async def create_refund(payment_id: str, request: Request) -> Response:
    """Refund a succeeded payment, in full or in part, as many times as what is left allows."""
    services, merchant = await services_and_merchant(request)
    idempotency_key = idempotency_key_of(request)
    body = await read_body(request, RefundCreate, "the refund", optional=True)
    result = await services.operations.refund(
        merchant, payment_id, body.amount, body.reason, body.reference, idempotency_key
    )
    headers = {"Location": f"{REFUNDS_PATH}/{result.operation.id}"}
    if result.replayed:
        headers["Idempotent-Replayed"] = "true"
    return json_response(refund_document(result.operation), 201, headers)


async def list_refunds(payment_id: str, merchant: MerchantDep, services: ServicesDep) -> Response:
    """The payment's refunds, newest first."""
    refunds = await services.operations.list_refunds(merchant, payment_id)
    document = {"object": "list", "data": [refund_document(r) for r in refunds], "has_more": False}
    return json_response(document, 200, {})


async def get_refund(refund_id: str, merchant: MerchantDep, services: ServicesDep) -> Response:
    """One of your refunds; another merchant's is `404`, like an unknown id."""
    if len(refund_id) > 64:
        raise NotFound(f"no refund {refund_id[:64]}")
    return json_response(
        refund_document(await services.operations.get_refund(merchant, refund_id)), 200, {}
    )


_PAYMENT = f"{PAYMENTS_PATH}/{{payment_id}}"
_SETTLED = {"model": PaymentOut, "description": "Done: the payment as it stands now"}
_PENDING = {
    "model": PaymentOut,
    "description": "Sent; the bank's answer is awaited (the reconciler finishes it)",
}
operations_router.add_api_route(
    f"{_PAYMENT}/capture",
    capture_payment,
    methods=["POST"],
    summary="Capture an authorized payment",
    response_model=PaymentOut,
    responses={
        200: _SETTLED,
        202: _PENDING,
        402: problem_doc("The bank declined the capture"),
        **_ERRORS,
        **BODY_ERRORS,
    },
    openapi_extra=_body_docs("CaptureCreate", required=False),
)
operations_router.add_api_route(
    f"{_PAYMENT}/cancel",
    cancel_payment,
    methods=["POST"],
    summary="Cancel an authorized payment",
    response_model=PaymentOut,
    responses={
        200: _SETTLED,
        202: _PENDING,
        402: problem_doc("The bank declined the cancellation"),
        **_ERRORS,
    },
    openapi_extra={"security": [{"HTTPBearer": []}], "parameters": [IDEMPOTENCY_KEY_DOCS]},
)
operations_router.add_api_route(
    f"{_PAYMENT}/refunds",
    create_refund,
    methods=["POST"],
    status_code=201,
    summary="Refund a payment",
    response_model=RefundOut,
    responses={
        201: {"description": "The refund: pending, succeeded or failed"},
        **_ERRORS,
        **BODY_ERRORS,
    },
    openapi_extra=_body_docs("RefundCreate", required=False),
)
operations_router.add_api_route(
    f"{_PAYMENT}/refunds",
    list_refunds,
    methods=["GET"],
    summary="List a payment's refunds",
    response_model=RefundList,
    responses={k: v for k, v in _ERRORS.items() if k in (401, 404, 429)},
)
operations_router.add_api_route(
    f"{REFUNDS_PATH}/{{refund_id}}",
    get_refund,
    methods=["GET"],
    summary="Get a refund",
    response_model=RefundOut,
    responses={
        401: _ERRORS[401],
        404: problem_doc("No such refund for this merchant"),
        429: _ERRORS[429],
    },
)
