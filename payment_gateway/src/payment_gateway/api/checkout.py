"""Routes of checkout sessions, the merchant's side of the hosted payment page.

The page itself, for shoppers' browsers, is api/checkout_page.py (docs/design.md, Hosted
payment page).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request, Response
from pydantic import StringConstraints

from payment_gateway.api.checkout_schemas import CheckoutSessionCreate, CheckoutSessionOut
from payment_gateway.api.dependencies import MerchantDep, ServicesDep, services_and_merchant
from payment_gateway.api.routes import (
    BODY_ERRORS,
    RATE_LIMITED_DOCS,
    json_response,
    problem_doc,
    read_body,
)
from payment_gateway.service.documents import checkout_session_document

SESSIONS_PATH = "/api/v1/checkout-sessions"

checkout_router = APIRouter(tags=["checkout sessions"])

_Id = Annotated[str, StringConstraints(min_length=1, max_length=64)]


async def create_session(request: Request) -> Response:
    """Open a hosted payment page for one payment; send the shopper to its `url`.

    The page takes the card, so card data never reaches you. Once a payment succeeds the
    shopper's browser is sent to `success_url` with `session_id` added: that redirect is not
    a proof of payment. Confirm with `GET /api/v1/checkout-sessions/{id}` (`status:
    complete`) or the `checkout.session.completed` event. After 5 declined cards, or at
    `expires_at`, the session expires (`checkout.session.expired`).
    """
    services, merchant = await services_and_merchant(request)
    body = await read_body(request, CheckoutSessionCreate, "the checkout session")
    session = await services.checkout.create(merchant, body.to_domain())
    headers = {"Location": f"{SESSIONS_PATH}/{session.id}"}
    return json_response(checkout_session_document(session), 201, headers)


async def get_session(session_id: _Id, merchant: MerchantDep, services: ServicesDep) -> Response:
    """One of your checkout sessions; another merchant's is `404`, like an unknown id."""
    session = await services.checkout.get(merchant, session_id)
    return json_response(checkout_session_document(session), 200, {})


async def expire_session(session_id: _Id, merchant: MerchantDep, services: ServicesDep) -> Response:
    """Expire an open session: its page takes no more payments (`checkout.session.expired`).

    `409` when it is complete or expired already, or while a payment of it is still being
    decided (it may yet succeed).
    """
    session = await services.checkout.expire(merchant, session_id)
    return json_response(checkout_session_document(session), 200, {})


_ERRORS: dict[int | str, dict[str, Any]] = {
    401: problem_doc("Missing, unknown or revoked API key"),
    429: RATE_LIMITED_DOCS,
}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: problem_doc("No such checkout session for this merchant"),
    422: problem_doc("An id longer than 64 characters (`errors` names it)"),
}

checkout_router.add_api_route(
    SESSIONS_PATH,
    create_session,
    methods=["POST"],
    status_code=201,
    summary="Create a checkout session",
    response_model=CheckoutSessionOut,
    responses={
        201: {
            "description": "Created",
            "headers": {
                "Location": {"schema": {"type": "string"}, "description": "The session's URL"}
            },
        },
        **_ERRORS,
        **BODY_ERRORS,
        422: problem_doc("Invalid request; `errors` names each field"),
    },
    openapi_extra={
        "security": [{"HTTPBearer": []}],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"$ref": "#/components/schemas/CheckoutSessionCreate"}
                }
            },
        },
    },
)
checkout_router.add_api_route(
    f"{SESSIONS_PATH}/{{session_id}}",
    get_session,
    methods=["GET"],
    summary="Get a checkout session",
    response_model=CheckoutSessionOut,
    responses={**_NOT_FOUND, **_ERRORS},
)
checkout_router.add_api_route(
    f"{SESSIONS_PATH}/{{session_id}}/expire",
    expire_session,
    methods=["POST"],
    summary="Expire a checkout session",
    response_model=CheckoutSessionOut,
    responses={
        **_NOT_FOUND,
        409: problem_doc("The session is not open, or a payment of it is still being decided"),
        **_ERRORS,
    },
)
