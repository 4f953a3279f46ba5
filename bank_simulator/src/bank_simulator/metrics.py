"""Prometheus metrics of the bank simulator, served at ``/metrics`` on its API port.

The simulator is a test stand-in reachable only from inside the deployment, so its metrics
share the API port (the gateway, which merchants reach, serves its own on a separate port).
Five series families: deposits by outcome, captures/voids/refunds by kind and outcome, 3-D
Secure authentications and challenge answers by outcome, and request latency by route template.
"""

from __future__ import annotations

import time

from fastapi import FastAPI
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

METRICS_PATH = "/metrics"
DEPOSIT_PATH = "/api/v1/deposit"

DEPOSITS = Counter(
    "bank_deposits_total",
    "Deposit requests by outcome (created, repeat, conflict, unavailable, rejected, error)",
    ["outcome"],
)
OPERATIONS = Counter(
    "bank_operations_total",
    "Capture, void and refund requests by kind and outcome (succeeded, failed: recorded as "
    "declined, repeat, conflict, refused: against the deposit's status or amount, unavailable, "
    "rejected: malformed)",
    ["kind", "outcome"],
)
AUTHENTICATIONS = Counter(
    "bank_3ds_authentications_total",
    "3-D Secure authentication requests by outcome (authenticated, not_enrolled, "
    "challenge_required: created so, repeat, conflict, unavailable, rejected: malformed)",
    ["outcome"],
)
CHALLENGES = Counter(
    "bank_3ds_challenges_total",
    "Challenge form posts by outcome (authenticated, wrong_code, canceled, replayed: already "
    "answered, unchanged, forbidden: missing or wrong CSRF token)",
    ["outcome"],
)
REQUEST_SECONDS = Histogram(
    "bank_http_request_duration_seconds",
    "HTTP request latency by route template",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)

# The deposit endpoint's answers (see the route's documented responses in app.py).
_OUTCOME_BY_STATUS = {201: "created", 200: "repeat", 409: "conflict", 503: "unavailable"}


def deposit_outcome(status: int) -> str:
    """The `outcome` label for a deposit answered with this HTTP status."""
    if status in _OUTCOME_BY_STATUS:
        return _OUTCOME_BY_STATUS[status]
    return "rejected" if 400 <= status < 500 else "error"


class MetricsMiddleware:
    """Times every request and counts deposit outcomes, labelled by route template.

    The template (not the raw path) keeps the label set bounded: every status inquiry has its
    own reference in the path.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == METRICS_PATH:
            await self.app(scope, receive, send)
            return
        status = 500  # what the client gets if the app raises before answering
        started = time.perf_counter()

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            REQUEST_SECONDS.labels(scope["method"], route).observe(time.perf_counter() - started)
            if route == DEPOSIT_PATH and scope["method"] == "POST":
                DEPOSITS.labels(deposit_outcome(status)).inc()


async def metrics_endpoint(_request: Request) -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


def install_metrics(app: FastAPI) -> None:
    """Serve ``/metrics`` and record every other request."""
    app.add_route(METRICS_PATH, metrics_endpoint, include_in_schema=False)
    app.add_middleware(MetricsMiddleware)
