"""Request and response schemas of events and webhook endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from payment_gateway.api.schemas import safe_text
from payment_gateway.domain.deliveries import ALL_EVENTS, WebhookEndpoint
from payment_gateway.domain.events import EventType
from payment_gateway.service.documents import timestamp
from payment_gateway.service.ports import DeliveryRecord
from payment_gateway.service.webhooks import MAX_ENDPOINTS_PER_MERCHANT, EndpointChanges

_URL = Annotated[
    str,
    Field(
        strict=True,
        min_length=1,
        max_length=2048,
        description="Where events are POSTed. In production it must be https and resolve "
        "only to public addresses; redirects are not followed.",
        examples=["https://merchant.example/webhooks/gateway"],
    ),
]
_EVENTS = Annotated[
    list[Annotated[str, Field(max_length=40)]],
    Field(
        min_length=1,
        max_length=len(EventType) + 1,
        description=f'Event types to receive, or `["{ALL_EVENTS}"]` for all of them: '
        + ", ".join(f"`{kind.value}`" for kind in EventType),
        examples=[["payment.succeeded", "payment.failed", "refund.failed"]],
    ),
]
_DESCRIPTION = Annotated[
    str | None,
    Field(strict=True, max_length=255, examples=["order fulfilment"]),
    AfterValidator(safe_text),
]


class WebhookEndpointCreate(BaseModel):
    """A URL to POST signed events to."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "url": "https://merchant.example/webhooks/gateway",
                    "enabled_events": ["payment.succeeded", "payment.failed", "refund.failed"],
                    "description": "order fulfilment",
                }
            ]
        },
    )

    url: _URL
    enabled_events: _EVENTS = Field(default_factory=lambda: [ALL_EVENTS])
    description: _DESCRIPTION = None


class WebhookEndpointUpdate(BaseModel):
    """Only the fields sent change."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"enabled_events": ["*"]},
                {"disabled": True},
                {"url": "https://merchant.example/webhooks/v2", "disabled": False},
            ]
        },
    )

    url: _URL | None = None
    enabled_events: _EVENTS | None = None
    description: _DESCRIPTION = None
    disabled: bool | None = Field(
        None, strict=True, description="true stops deliveries; false resumes them."
    )

    def to_changes(self) -> EndpointChanges:
        return EndpointChanges(
            url=self.url,
            enabled_events=None if self.enabled_events is None else tuple(self.enabled_events),
            description=self.description,
            disabled=self.disabled,
        )


class WebhookEndpointOut(BaseModel):
    id: str = Field(examples=["we_01965f2e-1c3a-7d4e-9b1a-2f0c3e4d5a6b"])
    object: Literal["webhook_endpoint"]
    url: str
    description: str | None
    enabled_events: list[str]
    status: Literal["enabled", "disabled"]
    disabled_reason: Literal["requested_by_merchant", "endpoint_gone", "failing"] | None = Field(
        description="Why deliveries stopped: you disabled it, it answered 410 Gone, or it failed"
        " every attempt for 5 days"
    )
    created_at: datetime
    updated_at: datetime


class WebhookEndpointWithSecret(WebhookEndpointOut):
    secret: str = Field(
        description="The signing secret, shown this once: keep it to verify signatures.",
        examples=["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
    )


class WebhookEndpointList(BaseModel):
    object: Literal["list"]
    data: list[WebhookEndpointOut]
    has_more: bool = Field(description=f"Always false: at most {MAX_ENDPOINTS_PER_MERCHANT}.")


class EventData(BaseModel):
    object: dict[str, Any] = Field(
        description="The payment or refund as the API showed it right after the change"
    )


class EventOut(BaseModel):
    """Something that happened: the body of a webhook, byte for byte."""

    id: str = Field(examples=["evt_01965f2e-1c3a-7d4e-9b1a-2f0c3e4d5a6b"])
    object: Literal["event"]
    type: EventType
    created_at: datetime
    data: EventData


class EventList(BaseModel):
    object: Literal["list"]
    data: list[EventOut]
    has_more: bool


class DeliveryAttemptOut(BaseModel):
    attempted_at: datetime
    status_code: int | None = Field(description="None when no HTTP answer came")
    duration_ms: int
    error: str | None = Field(examples=["timeout"])
    response_excerpt: str | None = Field(description="The answer's body, cut to 1 KiB")


class WebhookDeliveryOut(BaseModel):
    id: str
    object: Literal["webhook_delivery"]
    event_id: str
    event_type: EventType
    endpoint_id: str
    status: Literal["pending", "delivered", "failed"]
    next_attempt_at: datetime | None
    attempts: list[DeliveryAttemptOut]
    created_at: datetime
    updated_at: datetime


class WebhookDeliveryList(BaseModel):
    object: Literal["list"]
    data: list[WebhookDeliveryOut]
    has_more: bool


class RedeliveryOut(BaseModel):
    event_id: str
    endpoints: int = Field(description="How many endpoints it is being sent to again")


def endpoint_document(endpoint: WebhookEndpoint, secret: str | None = None) -> dict[str, Any]:
    document: dict[str, Any] = {
        "id": endpoint.id,
        "object": "webhook_endpoint",
        "url": endpoint.url,
        "description": endpoint.description,
        "enabled_events": list(endpoint.enabled_events),
        "status": "disabled" if endpoint.disabled else "enabled",
        "disabled_reason": endpoint.disabled_reason,
        "created_at": timestamp(endpoint.created_at),
        "updated_at": timestamp(endpoint.updated_at),
    }
    if secret is not None:
        document["secret"] = secret
    return document


def delivery_document(delivery: DeliveryRecord) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "object": "webhook_delivery",
        "event_id": delivery.event_id,
        "event_type": delivery.event_type,
        "endpoint_id": delivery.endpoint_id,
        "status": delivery.status.value,
        "next_attempt_at": (
            None if delivery.next_attempt_at is None else timestamp(delivery.next_attempt_at)
        ),
        "attempts": [
            {
                "attempted_at": timestamp(attempt.attempted_at),
                "status_code": attempt.status_code,
                "duration_ms": attempt.duration_ms,
                "error": attempt.error,
                "response_excerpt": attempt.response_excerpt,
            }
            for attempt in delivery.attempts
        ],
        "created_at": timestamp(delivery.created_at),
        "updated_at": timestamp(delivery.updated_at),
    }
