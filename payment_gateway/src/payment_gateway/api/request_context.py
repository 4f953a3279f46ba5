"""Request ids in and out (and on every log line), plus HTTP metrics by route template."""

from __future__ import annotations

import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from payment_gateway.logging_setup import request_context
from payment_gateway.metrics import HTTP_REQUESTS, HTTP_SECONDS

_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


class RequestContextMiddleware:
    """Pure ASGI (no per-request task): the request id and the HTTP metrics of each request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                candidate = value.decode("latin-1")
                if _VALID_REQUEST_ID.fullmatch(candidate):
                    request_id = candidate
                break
        request_id = request_id or uuid.uuid4().hex
        client = scope.get("client")
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        # The address uvicorn reports: the proxy's, or the client's named by X-Forwarded-For
        # when FORWARDED_ALLOW_IPS trusts that proxy. The audit trail records it.
        with request_context(request_id, client[0] if client else "unknown"):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                route = scope.get("route")
                template = getattr(route, "path", None) or "unmatched"
                HTTP_REQUESTS.labels(scope["method"], template, str(status)).inc()
                elapsed = time.perf_counter() - started
                HTTP_SECONDS.labels(scope["method"], template).observe(elapsed)
