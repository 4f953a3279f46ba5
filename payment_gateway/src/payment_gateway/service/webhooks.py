"""Use cases: a merchant's webhook endpoints, its events, and what was delivered where.

The secret an endpoint is signed with is shown once, when it is made (or rotated); it is kept
encrypted, since signing needs it back (docs/design.md, Events and webhooks).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from payment_gateway import audit
from payment_gateway.domain.deliveries import (
    DisabledReason,
    WebhookEndpoint,
    unknown_event_types,
)
from payment_gateway.domain.events import Event
from payment_gateway.domain.merchant import Merchant
from payment_gateway.domain.webhooks import UnsafeWebhookUrl, new_webhook_secret
from payment_gateway.service.clock import Clock, utc_now
from payment_gateway.service.errors import FieldError, InvalidRequest, NotFound
from payment_gateway.service.ids import new_id
from payment_gateway.service.listing import check_one_cursor
from payment_gateway.service.ports import (
    DeliveryRecord,
    ListPosition,
    SecretCipher,
    WebhookRepository,
    WebhookUnitOfWorkFactory,
    WebhookUrlGuard,
)

ENDPOINT_ID_PREFIX = "we_"
MAX_ENDPOINTS_PER_MERCHANT = 16  # as Stripe allows: enough for environments and services
SECRET_OVERLAP = timedelta(hours=24)  # the old secret keeps signing beside the new one


@dataclass(frozen=True, slots=True)
class EndpointChanges:
    """A PATCH: only the fields given change."""

    url: str | None = None
    enabled_events: tuple[str, ...] | None = None
    description: str | None = None
    disabled: bool | None = None


@dataclass(frozen=True, slots=True)
class EndpointWithSecret:
    endpoint: WebhookEndpoint
    secret: str  # shown this once


@dataclass(frozen=True, slots=True)
class EventListQuery:
    limit: int = 10
    starting_after: str | None = None
    ending_before: str | None = None
    type: str | None = None


@dataclass(frozen=True, slots=True)
class EventPage:
    events: list[Event]  # newest first
    has_more: bool


@dataclass(frozen=True, slots=True)
class DeliveryPage:
    deliveries: list[DeliveryRecord]  # newest first
    has_more: bool


def _invalid(field: str, message: str) -> InvalidRequest:
    return InvalidRequest(f"{field}: {message}", errors=[FieldError(field, message)])


class WebhookService:
    def __init__(
        self,
        uow: WebhookUnitOfWorkFactory,
        cipher: SecretCipher,
        url_guard: WebhookUrlGuard,
        clock: Clock = utc_now,
    ) -> None:
        self._uow = uow
        self._cipher = cipher
        self._url_guard = url_guard
        self._clock = clock

    # -- endpoints

    async def create_endpoint(
        self,
        merchant: Merchant,
        url: str,
        enabled_events: tuple[str, ...],
        description: str | None,
    ) -> EndpointWithSecret:
        await self._check_url(url)
        _check_events(enabled_events)
        now = self._clock()
        endpoint = WebhookEndpoint(
            id=ENDPOINT_ID_PREFIX + new_id(),
            merchant_id=merchant.id,
            url=url,
            enabled_events=enabled_events,
            created_at=now,
            updated_at=now,
            description=description,
        )
        secret = new_webhook_secret()
        async with self._uow() as uow:
            if len(await uow.webhooks.list_endpoints(merchant.id)) >= MAX_ENDPOINTS_PER_MERCHANT:
                raise _invalid("url", f"at most {MAX_ENDPOINTS_PER_MERCHANT} endpoints a merchant")
            await uow.webhooks.add_endpoint(endpoint, self._cipher.encrypt(secret))
            await uow.commit()
        audit.record("webhook_endpoint_created", merchant_id=merchant.id, endpoint_id=endpoint.id)
        return EndpointWithSecret(endpoint, secret)

    async def get_endpoint(self, merchant: Merchant, endpoint_id: str) -> WebhookEndpoint:
        async with self._uow(read_only=True, single_statement=True) as uow:
            return await _owned(uow.webhooks, merchant, endpoint_id)

    async def list_endpoints(self, merchant: Merchant) -> list[WebhookEndpoint]:
        async with self._uow(read_only=True, single_statement=True) as uow:
            return await uow.webhooks.list_endpoints(merchant.id)

    async def update_endpoint(
        self, merchant: Merchant, endpoint_id: str, changes: EndpointChanges
    ) -> WebhookEndpoint:
        if changes.url is not None:
            await self._check_url(changes.url)
        if changes.enabled_events is not None:
            _check_events(changes.enabled_events)
        now = self._clock()
        async with self._uow() as uow:
            endpoint = await _owned(uow.webhooks, merchant, endpoint_id)
            was_disabled = endpoint.disabled
            endpoint.url = changes.url if changes.url is not None else endpoint.url
            if changes.enabled_events is not None:
                endpoint.enabled_events = changes.enabled_events
            if changes.description is not None:
                endpoint.description = changes.description
            if changes.disabled is not None:
                endpoint.disabled = changes.disabled
                endpoint.disabled_reason = (
                    DisabledReason.REQUESTED.value if changes.disabled else None
                )
            endpoint.updated_at = now
            await uow.webhooks.update_endpoint(endpoint)
            if endpoint.disabled and not was_disabled:
                await uow.webhooks.park_deliveries(endpoint.id)
            elif was_disabled and not endpoint.disabled:
                await uow.webhooks.resume_deliveries(endpoint.id, now)
            await uow.commit()
        audit.record("webhook_endpoint_updated", merchant_id=merchant.id, endpoint_id=endpoint_id)
        return endpoint

    async def delete_endpoint(self, merchant: Merchant, endpoint_id: str) -> None:
        async with self._uow() as uow:
            if not await uow.webhooks.delete_endpoint(endpoint_id, merchant.id):
                raise NotFound(f"no webhook endpoint {endpoint_id}")
            await uow.commit()
        audit.record("webhook_endpoint_deleted", merchant_id=merchant.id, endpoint_id=endpoint_id)

    async def rotate_secret(self, merchant: Merchant, endpoint_id: str) -> EndpointWithSecret:
        secret = new_webhook_secret()
        async with self._uow() as uow:
            endpoint = await _owned(uow.webhooks, merchant, endpoint_id)
            await uow.webhooks.replace_secret(
                endpoint.id, self._cipher.encrypt(secret), self._clock() + SECRET_OVERLAP
            )
            await uow.commit()
        audit.record("webhook_secret_rotated", merchant_id=merchant.id, endpoint_id=endpoint_id)
        return EndpointWithSecret(endpoint, secret)

    async def list_deliveries(
        self, merchant: Merchant, endpoint_id: str, limit: int, starting_after: str | None
    ) -> DeliveryPage:
        async with self._uow(read_only=True) as uow:
            endpoint = await _owned(uow.webhooks, merchant, endpoint_id)
            older_than = None
            if starting_after is not None:
                cursor = await uow.webhooks.get_delivery(starting_after, endpoint.id)
                if cursor is None:
                    raise NotFound(
                        f"no delivery {starting_after}",
                        errors=[FieldError("starting_after", "no such delivery")],
                    )
                older_than = ListPosition(cursor.created_at, cursor.id)
            found = await uow.webhooks.list_deliveries(endpoint.id, limit + 1, older_than)
        return DeliveryPage(found[:limit], has_more=len(found) > limit)

    async def _check_url(self, url: str) -> None:
        try:
            await self._url_guard.check(url)
        except UnsafeWebhookUrl as unsafe:
            raise _invalid("url", unsafe.reason) from None

    # -- events

    async def get_event(self, merchant: Merchant, event_id: str) -> Event:
        async with self._uow(read_only=True, single_statement=True) as uow:
            event = await uow.webhooks.get_event(event_id, merchant.id)
        if event is None:
            raise NotFound(f"no event {event_id}")
        return event

    async def list_events(self, merchant: Merchant, query: EventListQuery) -> EventPage:
        check_one_cursor(query.starting_after, query.ending_before)
        async with self._uow(read_only=True) as uow:
            webhooks = uow.webhooks
            older_than = newer_than = None
            if query.starting_after is not None:
                older_than = await _event_position(
                    webhooks, merchant, "starting_after", query.starting_after
                )
            if query.ending_before is not None:
                newer_than = await _event_position(
                    webhooks, merchant, "ending_before", query.ending_before
                )
            found = await webhooks.list_events(
                merchant.id,
                query.type,
                query.limit + 1,  # one more than asked tells whether there are more
                older_than=older_than,
                newer_than=newer_than,
            )
        page = found[: query.limit]
        if newer_than is not None:
            page.reverse()
        return EventPage(page, has_more=len(found) > query.limit)

    async def redeliver(self, merchant: Merchant, event_id: str) -> int:
        """Send the event again to every enabled endpoint subscribed to it; how many."""
        async with self._uow() as uow:
            event = await uow.webhooks.get_event(event_id, merchant.id)
            if event is None:
                raise NotFound(f"no event {event_id}")
            count = await uow.webhooks.redeliver(event, self._clock())
            await uow.commit()
        audit.record("event_redelivered", merchant_id=merchant.id, event_id=event_id)
        return count


def _check_events(enabled_events: tuple[str, ...]) -> None:
    if not enabled_events:
        raise _invalid("enabled_events", 'name at least one event type, or "*"')
    unknown = unknown_event_types(enabled_events)
    if unknown:
        raise _invalid("enabled_events", f"unknown event types: {', '.join(unknown)}")


async def _owned(
    webhooks: WebhookRepository, merchant: Merchant, endpoint_id: str
) -> WebhookEndpoint:
    endpoint = await webhooks.get_endpoint(endpoint_id, merchant.id)
    if endpoint is None:  # another merchant's too: never reveal that it exists
        raise NotFound(f"no webhook endpoint {endpoint_id}")
    return endpoint


async def _event_position(
    webhooks: WebhookRepository, merchant: Merchant, parameter: str, event_id: str
) -> ListPosition:
    event = await webhooks.get_event(event_id, merchant.id)
    if event is None:
        raise NotFound(f"no event {event_id}", errors=[FieldError(parameter, "no such event")])
    return ListPosition(event.created_at, event.id)
