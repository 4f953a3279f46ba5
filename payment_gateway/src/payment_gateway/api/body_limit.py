"""Refuse bodies over the limit before anything else reads them (pure ASGI, no buffering)."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from payment_gateway.api.html_pages import form_refused_page
from payment_gateway.api.problems import problem_response
from payment_gateway.domain.checkout import CHECKOUT_PATH
from payment_gateway.service.payments import THREE_D_SECURE_RETURN_PATH

MAX_BODY_BYTES = 64 * 1024
# A shopper's browser gets a page, as for the checkout form's own (smaller) limit; the API
# gets problem+json.
PAGE_PATHS = (CHECKOUT_PATH, THREE_D_SECURE_RETURN_PATH)


class BodyTooLarge(Exception):
    pass


class BodySizeLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit() or int(value) > self.max_bytes:
                    await self._too_large(scope, receive, send)
                    return
                break

        received = 0
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if response_started:
                raise
            await self._too_large(scope, receive, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"].startswith(PAGE_PATHS):
            page = form_refused_page(413, headers={"Connection": "close"})
            await page(scope, receive, send)
            return
        response = problem_response(
            413,
            "Content Too Large",
            f"the request body must not exceed {self.max_bytes} bytes",
            type_slug="payload-too-large",
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)
