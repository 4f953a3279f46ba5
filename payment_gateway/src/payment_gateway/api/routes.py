"""HTTP routes of the merchant API."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

import orjson
from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, StringConstraints, TypeAdapter, ValidationError
from starlette.requests import ClientDisconnect

from payment_gateway.api.dependencies import (
    MerchantDep,
    ServicesDep,
    services_and_merchant,
)
from payment_gateway.api.problems import PROBLEM_JSON, invalid_request, problem_response
from payment_gateway.api.schemas import (
    PaymentCreate,
    PaymentList,
    PaymentListParams,
    PaymentOut,
    Problem,
    payment_list_document,
)
from payment_gateway.service.documents import payment_document
from payment_gateway.service.errors import (
    ClientGone,
    FieldError,
    InvalidRequest,
    NotFound,
    StorageUnavailable,
    UnsupportedMediaType,
)
from payment_gateway.service.listing import list_payments

PAYMENTS_PATH = "/api/v1/payments"
LEGACY_PAYMENT_PATH = "/api/v1/payment"

_IDEMPOTENCY_KEY_DESCRIPTION = "Retry-safe key (≤ 255 characters), remembered for 24 hours."
_IDEMPOTENCY_KEY = TypeAdapter(Annotated[str, StringConstraints(min_length=1, max_length=255)])

IDEMPOTENCY_KEY_DOCS: dict[str, Any] = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "schema": {
        "anyOf": [{"type": "string", "minLength": 1, "maxLength": 255}, {"type": "null"}],
        "description": _IDEMPOTENCY_KEY_DESCRIPTION,
        "title": "Idempotency-Key",
    },
    "description": _IDEMPOTENCY_KEY_DESCRIPTION,
}

# What FastAPI would document for create_payment's body, bearer auth and Idempotency-Key header
# had it read them through dependencies.
_CREATE_DOCS: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PaymentCreate"}}},
    },
    "security": [{"HTTPBearer": []}],
    "parameters": [IDEMPOTENCY_KEY_DOCS],
}


def problem_doc(description: str) -> dict[str, Any]:
    """An error response's OpenAPI entry: problem+json with this description."""
    return {"model": Problem, "description": description, "content": {PROBLEM_JSON: {}}}


RATE_LIMITED_DOCS: dict[str, Any] = {
    **problem_doc(
        "Over the rate limit of this API key (or, for requests without a valid key, of this "
        "client address); retry after `Retry-After` seconds"
    ),
    "headers": {
        "Retry-After": {
            "schema": {"type": "integer", "minimum": 1},
            "description": "Seconds until the limit lets a request through again",
        },
        "RateLimit-Policy": {
            "schema": {"type": "string"},
            "description": (
                'The quota (draft-ietf-httpapi-ratelimit-headers), e.g. `"per-key";q=200;w=2`'
            ),
        },
        "RateLimit": {
            "schema": {"type": "string"},
            "description": 'Quota left and seconds until it grows, e.g. `"per-key";r=0;t=1`',
        },
    },
}
# Every route that reads a body: BodySizeLimitMiddleware and read_body refuse these first.
BODY_ERRORS: dict[int | str, dict[str, Any]] = {
    413: problem_doc("Body over 64 KiB"),
    415: problem_doc("Body is not JSON"),
}
_COMMON_ERRORS: dict[int | str, dict[str, Any]] = {
    401: problem_doc("Missing, unknown or revoked API key"),
    422: problem_doc("Invalid request; `errors` names each field"),
    429: RATE_LIMITED_DOCS,
}

Body = TypeVar("Body", bound=BaseModel)

payments_router = APIRouter(tags=["payments"])
health_router = APIRouter(tags=["health"])


def _is_json(content_type: str) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


def json_response(document: dict[str, Any], status_code: int, headers: dict[str, str]) -> Response:
    return Response(orjson.dumps(document), status_code, headers, media_type="application/json")


def idempotency_key_of(request: Request) -> str | None:
    """The Idempotency-Key header, if sent; 422 naming it when empty or too long."""
    idempotency_key = request.headers.get("idempotency-key")
    if idempotency_key is not None:
        try:
            _IDEMPOTENCY_KEY.validate_python(idempotency_key)
        except ValidationError as exc:
            raise InvalidRequest(
                "the request is invalid: see errors",
                errors=[FieldError("Idempotency-Key", e["msg"]) for e in exc.errors()],
            ) from None
    return idempotency_key


async def read_body(
    request: Request, model: type[Body], what: str, *, optional: bool = False
) -> Body:
    """The JSON body as ``model``: 415 for another media type, 422 naming each bad field.

    An ``optional`` body may be left out (read as ``{}``).
    """
    content_type = request.headers.get("content-type")
    if content_type is not None and not _is_json(content_type):
        raise UnsupportedMediaType(f"send {what} as application/json")
    try:
        body = await request.body()
    except ClientDisconnect:
        raise ClientGone("the client went away before sending the whole body") from None
    try:
        return model.model_validate_json(body if body or not optional else b"{}")
    except ValidationError as exc:
        raise invalid_request(exc) from None


async def create_payment(request: Request) -> Response:
    """Charge a card. The body is read here, after authentication, so nothing runs first."""
    # The busiest route reads its headers itself rather than through FastAPI's dependency
    # solver, which cost a tenth of a payment's CPU; _CREATE_DOCS documents them the same.
    services, merchant = await services_and_merchant(request)
    idempotency_key = idempotency_key_of(request)
    payload = await read_body(request, PaymentCreate, "the payment")
    outcome = await services.payments.create(merchant, payload.to_domain(), idempotency_key)
    headers = {"Location": f"{PAYMENTS_PATH}/{outcome.payment.id}"}
    if outcome.replayed:
        headers["Idempotent-Replayed"] = "true"
    return json_response(payment_document(outcome.payment), 201, headers)


async def get_payment(payment_id: str, merchant: MerchantDep, services: ServicesDep) -> Response:
    """Read one of your payments. Another merchant's payment is `404`, like an unknown id."""
    if len(payment_id) > 64:
        raise NotFound(f"no payment {payment_id[:64]}")
    payment = await services.payments.get(merchant, payment_id)
    return json_response(payment_document(payment), 200, {})


_create_responses: dict[int | str, dict[str, Any]] = {
    201: {
        "description": "Created (or replayed: header `Idempotent-Replayed: true`)",
        "headers": {
            "Location": {"schema": {"type": "string"}, "description": "The payment's URL"},
            "Idempotent-Replayed": {
                "schema": {"type": "string", "enum": ["true"]},
                "description": "Present when this answers an earlier request with the same key",
            },
        },
    },
    **_COMMON_ERRORS,
    409: problem_doc("A request with this Idempotency-Key is still in progress; retry later"),
    **BODY_ERRORS,
}
_get_responses: dict[int | str, dict[str, Any]] = {
    **_COMMON_ERRORS,
    404: problem_doc("No such payment for this merchant"),
}

for path, include in ((PAYMENTS_PATH, True), (LEGACY_PAYMENT_PATH, False)):
    payments_router.add_api_route(
        path,
        create_payment,
        methods=["POST"],
        status_code=201,
        response_model=PaymentOut,
        responses=_create_responses,
        openapi_extra=_CREATE_DOCS,
        include_in_schema=include,
        summary="Create a payment",
        name="create_payment" if include else "create_payment_legacy",
    )
    payments_router.add_api_route(
        f"{path}/{{payment_id}}",
        get_payment,
        methods=["GET"],
        response_model=PaymentOut,
        responses=_get_responses,
        include_in_schema=include,
        summary="Get a payment",
        name="get_payment" if include else "get_payment_legacy",
    )


async def list_payments_route(
    merchant: MerchantDep,
    services: ServicesDep,
    params: Annotated[PaymentListParams, Query()],
) -> Response:
    """List your payments, newest first, a page at a time.

    `starting_after=<id>` gives the next (older) page, `ending_before=<id>` the previous
    (newer) one; `has_more` says whether more payments lie that way. Filters combine: every
    one given must hold. Only your own payments are listed.
    """
    page = await list_payments(services.uow, merchant, params.to_query())
    return json_response(payment_list_document(page), 200, {})


payments_router.add_api_route(
    PAYMENTS_PATH,
    list_payments_route,
    methods=["GET"],
    response_model=PaymentList,
    responses={
        **_COMMON_ERRORS,
        404: problem_doc(
            "`starting_after` or `ending_before` is not one of your payments (`errors` names it)"
        ),
        422: problem_doc(
            "Invalid query: `errors` names each parameter (e.g. `limit`, `created[gte]`, "
            "both cursors, or one this route does not take)"
        ),
    },
    summary="List payments",
    name="list_payments",
)


@health_router.get("/healthz", summary="Liveness: the process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@health_router.get(
    "/readyz",
    summary="Readiness: the database answers",
    responses={503: problem_doc("Database unreachable")},
)
async def readyz(services: ServicesDep) -> Response:
    try:
        await services.uow.ping()
    except StorageUnavailable:
        return problem_response(503, "Service Unavailable", "the database is unreachable")
    return json_response({"status": "ready"}, 200, {})
