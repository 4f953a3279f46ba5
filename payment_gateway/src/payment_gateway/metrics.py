"""Prometheus metrics, served on their own port (METRICS_PORT) apart from the merchant API.

Only monitoring reaches that port (a NetworkPolicy in deployments/), and no label names a
merchant: label values stay a small fixed set, whatever the number of merchants.
"""

from __future__ import annotations

import logging
import os
from threading import Thread
from wsgiref.simple_server import WSGIServer

from prometheus_client import REGISTRY as DEFAULT_REGISTRY
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    multiprocess,
    start_http_server,
)

log = logging.getLogger(__name__)

PAYMENTS = Counter("gateway_payments_total", "Payments reaching each status", ["status"])
REFUNDS = Counter("gateway_refunds_total", "Refunds reaching each status", ["status"])
CHECKOUT_SESSIONS = Counter(
    "gateway_checkout_sessions_total", "Checkout sessions reaching each status", ["status"]
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
    "Writes of one kind committed together in one transaction (new payments, outcomes)",
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
    "Requests answered 429 by a rate limit: per API key (key), per client address (address) "
    "or over the per-key cap of requests in progress (in_flight)",
    ["scope"],
)
RATE_LIMIT_HELD = Counter(
    "gateway_rate_limit_held_total",
    "429s held RATE_LIMIT_HOLD_SECONDS before being sent, for a key already known to be over",
)
RATE_LIMIT_STORAGE_ERRORS = Counter(
    "gateway_rate_limit_storage_errors_total",
    "Requests let through unchecked because the rate-limit storage (Redis) failed",
    ["scope"],
)
WEBHOOK_ATTEMPTS = Counter(
    "gateway_webhook_attempts_total",
    "Webhook delivery attempts by outcome: delivered, retrying (failed, to be tried again), "
    "failed (the last one allowed, or the endpoint answered 410)",
    ["outcome"],
)
WEBHOOK_DELIVERY_LAG = Histogram(
    "gateway_webhook_delivery_lag_seconds",
    "From an event's state change to the 2xx of the endpoint that received it",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600),
)
WEBHOOK_OLDEST_UNDELIVERED = Gauge(
    "gateway_webhook_oldest_undelivered_event_age_seconds",
    "Age of the oldest event still waiting to reach an endpoint (0 when none)",
    multiprocess_mode="max",
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


class MetricsServer:
    """The /metrics endpoint on its own port, in a thread of this process."""

    def __init__(self, server: WSGIServer, thread: Thread) -> None:
        self._server = server
        self._thread = thread

    @property
    def port(self) -> int:
        return self._server.server_port

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def start_metrics_server(host: str, port: int) -> MetricsServer | None:
    """Serve /metrics on ``port``, or return None when another worker already does.

    With several uvicorn workers (PROMETHEUS_MULTIPROC_DIR set) any one of them serves what
    all of them wrote, so the first to bind the port serves, and the others need not.
    """
    registry = DEFAULT_REGISTRY
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    try:
        server, thread = start_http_server(port, host, registry)
    except OSError:
        log.info("metrics port %s is taken (another worker serves it)", port)
        return None
    return MetricsServer(server, thread)
