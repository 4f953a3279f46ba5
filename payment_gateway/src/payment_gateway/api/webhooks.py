"""Routes of events and webhook endpoints (docs/design.md, Events and webhooks)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from payment_gateway.api.dependencies import MerchantDep, ServicesDep, services_and_merchant
from payment_gateway.api.routes import (
    BODY_ERRORS,
    RATE_LIMITED_DOCS,
    json_response,
    problem_doc,
    read_body,
)
from payment_gateway.api.webhook_schemas import (
    EventList,
    EventOut,
    RedeliveryOut,
    WebhookDeliveryList,
    WebhookEndpointCreate,
    WebhookEndpointList,
    WebhookEndpointOut,
    WebhookEndpointUpdate,
    WebhookEndpointWithSecret,
    delivery_document,
    endpoint_document,
)
from payment_gateway.domain.events import EventType
from payment_gateway.service.listing import DEFAULT_LIMIT, MAX_LIMIT
from payment_gateway.service.webhooks import EventListQuery

EVENTS_PATH = "/api/v1/events"
ENDPOINTS_PATH = "/api/v1/webhook-endpoints"

webhooks_router = APIRouter(tags=["events and webhooks"])

_Id = Annotated[str, StringConstraints(min_length=1, max_length=64)]
_LIMIT = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description=f"1 to {MAX_LIMIT}.", examples=[10])


class EventListParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int = _LIMIT
    starting_after: _Id | None = Field(
        None,
        description="An event id: the page of older ones.",
        examples=["evt_01965f2e-1c3a-7d4e-9b1a-2f0c3e4d5a6b"],
    )
    ending_before: _Id | None = Field(None, description="An event id: the page of newer ones.")
    type: EventType | None = Field(
        None, description="Only events of this type.", examples=["payment.failed"]
    )


class DeliveryListParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int = _LIMIT
    starting_after: _Id | None = Field(None, description="A delivery id: the page of older ones.")


_ERRORS: dict[int | str, dict[str, Any]] = {
    401: problem_doc("Missing, unknown or revoked API key"),
    429: RATE_LIMITED_DOCS,
}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: problem_doc("No such event or endpoint for this merchant")
}
_INVALID: dict[int | str, dict[str, Any]] = {
    422: problem_doc("Invalid request (`errors` names each field), e.g. an unsafe url")
}
# Every route with an id in its path: an id over 64 characters is refused before any lookup.
_BAD_ID: dict[int | str, dict[str, Any]] = {
    422: problem_doc("An id longer than 64 characters (`errors` names it)")
}


def _event_bytes(body: bytes, status_code: int = 200) -> Response:
    # The stored bytes, as every webhook of this event carried them: never re-serialised.
    return Response(body, status_code, media_type="application/json")


async def list_events(
    merchant: MerchantDep, services: ServicesDep, params: Annotated[EventListParams, Query()]
) -> Response:
    """Your events, newest first, a page at a time (kept 30 days).

    Each is exactly the body its webhooks carried. `starting_after=<id>` gives the next
    (older) page, `ending_before=<id>` the previous (newer) one.
    """
    query = EventListQuery(
        limit=params.limit,
        starting_after=params.starting_after,
        ending_before=params.ending_before,
        type=None if params.type is None else params.type.value,
    )
    page = await services.webhooks.list_events(merchant, query)
    has_more = b"true" if page.has_more else b"false"
    data = b",".join(event.body for event in page.events)
    return _event_bytes(b'{"object":"list","data":[' + data + b'],"has_more":' + has_more + b"}")


async def get_event(event_id: _Id, merchant: MerchantDep, services: ServicesDep) -> Response:
    """One of your events, exactly as its webhooks carried it."""
    return _event_bytes((await services.webhooks.get_event(merchant, event_id)).body)


async def redeliver_event(event_id: _Id, merchant: MerchantDep, services: ServicesDep) -> Response:
    """Send the event again to each enabled endpoint subscribed to its type.

    The same body and `webhook-id` as before: a receiver that de-duplicates on it sees one
    event. The attempt shows in the endpoint's deliveries.
    """
    count = await services.webhooks.redeliver(merchant, event_id)
    return json_response({"event_id": event_id, "endpoints": count}, 202, {})


async def create_endpoint(request: Request) -> Response:
    """Register an endpoint; the answer holds its signing secret, shown this once.

    Each event is POSTed to `url` as JSON, signed by the Standard Webhooks specification:
    `webhook-id` (the event id: de-duplicate on it), `webhook-timestamp` (unix seconds of the
    attempt) and `webhook-signature` (`v1,<base64 HMAC-SHA256 of id.timestamp.body>`; two,
    space-separated, for 24 hours after a rotation). Verify it on the **raw body bytes**,
    never on JSON parsed and serialised again, e.g. with the `standardwebhooks` library:

    ```python
    from standardwebhooks import Webhook

    event = Webhook(secret).verify(body, headers)  # raises WebhookVerificationError
    ```

    A `2xx` within the timeout (10 s) is delivered; anything else is tried again after about
    5 s, 5 min, 30 min, 2 h, 5 h, 10 h and 10 h (`Retry-After` honoured), then the delivery is
    failed. `410` disables the endpoint at once; so do 5 days of failed attempts. Delivery is
    at least once and unordered: order by the event's `created_at`. In production the url
    must be https and resolve to public addresses only (checked again at every send).
    """
    services, merchant = await services_and_merchant(request)
    body = await read_body(request, WebhookEndpointCreate, "the endpoint")
    created = await services.webhooks.create_endpoint(
        merchant, body.url, tuple(body.enabled_events), body.description
    )
    headers = {"Location": f"{ENDPOINTS_PATH}/{created.endpoint.id}"}
    return json_response(endpoint_document(created.endpoint, created.secret), 201, headers)


async def list_endpoints(merchant: MerchantDep, services: ServicesDep) -> Response:
    """Your endpoints, newest first."""
    endpoints = await services.webhooks.list_endpoints(merchant)
    document = {
        "object": "list",
        "data": [endpoint_document(endpoint) for endpoint in endpoints],
        "has_more": False,
    }
    return json_response(document, 200, {})


async def get_endpoint(endpoint_id: _Id, merchant: MerchantDep, services: ServicesDep) -> Response:
    """One of your endpoints (never its secret)."""
    endpoint = await services.webhooks.get_endpoint(merchant, endpoint_id)
    return json_response(endpoint_document(endpoint), 200, {})


async def update_endpoint(endpoint_id: _Id, request: Request) -> Response:
    """Change the url, the events or the description, or disable and enable it."""
    services, merchant = await services_and_merchant(request)
    body = await read_body(request, WebhookEndpointUpdate, "the changes")
    endpoint = await services.webhooks.update_endpoint(merchant, endpoint_id, body.to_changes())
    return json_response(endpoint_document(endpoint), 200, {})


async def delete_endpoint(
    endpoint_id: _Id, merchant: MerchantDep, services: ServicesDep
) -> Response:
    """Delete the endpoint and its deliveries; nothing more is sent to it."""
    await services.webhooks.delete_endpoint(merchant, endpoint_id)
    return Response(status_code=204)


async def rotate_secret(endpoint_id: _Id, merchant: MerchantDep, services: ServicesDep) -> Response:
    """A new signing secret, shown this once.

    For 24 hours webhooks carry two `v1,` signatures, by the new secret and by the old one,
    so a receiver still on the old secret keeps verifying until it is given the new one.
    """
    rotated = await services.webhooks.rotate_secret(merchant, endpoint_id)
    return json_response(endpoint_document(rotated.endpoint, rotated.secret), 200, {})


async def list_deliveries(
    endpoint_id: _Id,
    merchant: MerchantDep,
    services: ServicesDep,
    params: Annotated[DeliveryListParams, Query()],
) -> Response:
    """What was sent to the endpoint, newest first, with every attempt."""
    page = await services.webhooks.list_deliveries(
        merchant, endpoint_id, params.limit, params.starting_after
    )
    document = {
        "object": "list",
        "data": [delivery_document(delivery) for delivery in page.deliveries],
        "has_more": page.has_more,
    }
    return json_response(document, 200, {})


_BEARER: dict[str, Any] = {"security": [{"HTTPBearer": []}]}


def _body(schema: str) -> dict[str, Any]:
    return {
        **_BEARER,
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
        },
    }


def _route(
    path: str,
    endpoint: Any,
    method: str,
    summary: str,
    model: Any,
    responses: dict[int | str, dict[str, Any]],
    *,
    status_code: int = 200,
    body: str | None = None,
) -> None:
    webhooks_router.add_api_route(
        path,
        endpoint,
        methods=[method],
        status_code=status_code,
        summary=summary,
        response_model=model,
        responses={**responses, **_ERRORS, **({} if body is None else BODY_ERRORS)},
        openapi_extra=None if body is None else _body(body),
    )


_EVENT = f"{EVENTS_PATH}/{{event_id}}"
_ENDPOINT = f"{ENDPOINTS_PATH}/{{endpoint_id}}"
_route(EVENTS_PATH, list_events, "GET", "List events", EventList, {**_NOT_FOUND, **_INVALID})
_route(_EVENT, get_event, "GET", "Get an event", EventOut, {**_NOT_FOUND, **_BAD_ID})
_route(
    f"{_EVENT}/redeliver",
    redeliver_event,
    "POST",
    "Send an event again",
    RedeliveryOut,
    {202: {"description": "Scheduled for each subscribed endpoint"}, **_NOT_FOUND, **_BAD_ID},
    status_code=202,
)
_route(
    ENDPOINTS_PATH,
    create_endpoint,
    "POST",
    "Register a webhook endpoint",
    WebhookEndpointWithSecret,
    {201: {"description": "The endpoint, with its secret (shown once)"}, **_INVALID},
    status_code=201,
    body="WebhookEndpointCreate",
)
_route(ENDPOINTS_PATH, list_endpoints, "GET", "List webhook endpoints", WebhookEndpointList, {})
_route(
    _ENDPOINT,
    get_endpoint,
    "GET",
    "Get a webhook endpoint",
    WebhookEndpointOut,
    {**_NOT_FOUND, **_BAD_ID},
)
_route(
    _ENDPOINT,
    update_endpoint,
    "PATCH",
    "Update a webhook endpoint",
    WebhookEndpointOut,
    {**_NOT_FOUND, **_INVALID},
    body="WebhookEndpointUpdate",
)
_route(
    _ENDPOINT,
    delete_endpoint,
    "DELETE",
    "Delete a webhook endpoint",
    None,
    {204: {"description": "Deleted"}, **_NOT_FOUND, **_BAD_ID},
    status_code=204,
)
_route(
    f"{_ENDPOINT}/rotate-secret",
    rotate_secret,
    "POST",
    "Rotate an endpoint's signing secret",
    WebhookEndpointWithSecret,
    {**_NOT_FOUND, **_BAD_ID},
)
_route(
    f"{_ENDPOINT}/deliveries",
    list_deliveries,
    "GET",
    "List an endpoint's deliveries and their attempts",
    WebhookDeliveryList,
    {**_NOT_FOUND, **_INVALID},
)
