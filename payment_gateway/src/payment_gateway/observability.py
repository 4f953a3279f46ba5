"""Prometheus metrics and request ids: what operators see of the gateway."""

from __future__ import annotations

import os
import re
import time
import uuid

import structlog
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client import REGISTRY as DEFAULT_REGISTRY
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PAYMENTS = Counter(
    "gateway_payments_total",
    "Payments reaching each status, by merchant",
    ["status", "merchant"],
)
BANK_CALL_SECONDS = Histogram(
    "gateway_bank_call_duration_seconds",
    "Bank call latency",
    ["operation"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
BANK_CALL_ERRORS = Counter(
    "gateway_bank_call_errors_total", "Bank calls without a usable answer, by kind", ["kind"]
)
RECORD_BATCH_SIZE = Histogram(
    "gateway_group_commit_batch_size",
    "Writes committed together in one transaction (new payments, outcomes)",
    ["write"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
)
RECONCILER_LAG = Gauge(
    "gateway_reconciler_oldest_open_payment_age_seconds",
    "Age of the oldest payment still init or processing (0 when none)",
    multiprocess_mode="max",
)
RATE_LIMITED = Counter(
    "gateway_rate_limited_requests_total",
    "Requests answered 429 by a rate limit: per API key (key) or per client address (address)",
    ["scope"],
)
RATE_LIMIT_STORAGE_ERRORS = Counter(
    "gateway_rate_limit_storage_errors_total",
    "Requests let through unchecked because the rate-limit storage (Redis) failed",
    ["scope"],
)
HTTP_REQUESTS = Counter(
    "gateway_http_requests_total", "HTTP requests", ["method", "route", "status"]
)
HTTP_SECONDS = Histogram(
    "gateway_http_request_duration_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)

REQUEST_ID_HEADER = "X-Request-ID"
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


async def metrics_endpoint(_request: Request) -> Response:
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        # Several uvicorn workers: add up what each process wrote to the shared directory.
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
    return Response(generate_latest(DEFAULT_REGISTRY), media_type=CONTENT_TYPE_LATEST)


class ObservabilityMiddleware:
    """Request id in and out (and on every log line), plus HTTP metrics by route template."""

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
        structlog.contextvars.bind_contextvars(request_id=request_id)
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

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            if template != "/metrics":
                HTTP_REQUESTS.labels(scope["method"], template, str(status)).inc()
                HTTP_SECONDS.labels(scope["method"], template).observe(
                    time.perf_counter() - started
                )
            structlog.contextvars.unbind_contextvars("request_id")


def current_request_id() -> str | None:
    value = structlog.contextvars.get_contextvars().get("request_id")
    return value if isinstance(value, str) else None
