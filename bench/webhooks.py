"""Issue 11: the headline gateway with one subscribed webhook endpoint, and its deliveries.

Before the runs: the receiver (bench/webhook_receiver.py) gets a port, the first demo
merchant registers ``http://127.0.0.1:<port>/hooks`` for every event type, and the receiver
starts with the signing secret the registration answered. After the runs (and the integrity
check, which waits for every payment to settle, so every event has been written): wait until
every event of the database has reached the receiver, then compute each event's delivery lag
(first arrival at the receiver - the event's ``created_at``) and disable the endpoint, so
that the later gateways of the session (fair use, listing) send nothing.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import orjson

from bench.mariadb import BenchDatabase
from bench.paths import REPO, RESULTS_DIR
from bench.progress import log
from bench.results import DeliveryLag, TargetCheck, WebhookDelivery
from bench.services import Service, free_port, http_status, stop_service
from bench.webhook_receiver import SECRET_VARIABLE

ENDPOINTS_PATH = "/api/v1/webhook-endpoints"
FIRST_MERCHANT_TOKEN = "first_merchant_mock_token"  # noqa: S105 - the demo merchant's key
DELIVERY_TIMEOUT_SECONDS = 60.0
MISSING_SHOWN = 5


def _request(method: str, url: str, body: dict[str, Any] | None = None) -> Any:
    request = urllib.request.Request(  # noqa: S310 - loopback URL
        url,
        data=None if body is None else orjson.dumps(body),
        method=method,
        headers={
            "Authorization": f"Bearer {FIRST_MERCHANT_TOKEN}",
            "Content-Type": "application/json",
        },
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return orjson.loads(response.read())


def subscribe(gateway: Service) -> tuple[Service, str]:
    """Register the one endpoint, start its receiver; returns the receiver and endpoint id."""
    port = free_port()
    endpoint = _request(
        "POST",
        gateway.url + ENDPOINTS_PATH,
        {
            "url": f"http://127.0.0.1:{port}/hooks",
            "enabled_events": ["*"],
            "description": "bench receiver",
        },
    )
    log_path = RESULTS_DIR / "receiver.log"
    log_file = log_path.open("wb")
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "bench.webhook_receiver", str(port)],
        cwd=REPO,
        env={**os.environ, SECRET_VARIABLE: str(endpoint["secret"])},
        stdin=subprocess.DEVNULL,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    receiver = Service("receiver", process, port, log_path, log_file)
    deadline = time.monotonic() + 30
    while http_status(receiver.url + "/stats") != 200:
        if process.poll() is not None or time.monotonic() > deadline:
            stop_service(receiver)  # not in the harness's services yet: cleanup would miss it
            raise RuntimeError("the webhook receiver did not start: see " + str(log_path))
        time.sleep(0.1)
    log(f"webhook endpoint {endpoint['id']} -> receiver (pid {process.pid}) on port {port}")
    return receiver, str(endpoint["id"])


def unsubscribe(gateway: Service, endpoint_id: str) -> None:
    _request("PATCH", f"{gateway.url}{ENDPOINTS_PATH}/{endpoint_id}", {"disabled": True})


def _stats(receiver: Service) -> dict[str, int]:
    with urllib.request.urlopen(receiver.url + "/stats", timeout=10) as response:  # noqa: S310
        return dict(orjson.loads(response.read()))


def wait_for_delivery(
    db: BenchDatabase, receiver: Service, *, timeout: float = DELIVERY_TIMEOUT_SECONDS
) -> WebhookDelivery:
    """Wait until the receiver holds every event of the database (or ``timeout``), then
    compare them one by one and compute the lags."""
    started = time.monotonic()
    events = db.event_count()
    while _stats(receiver)["unique"] < events and time.monotonic() - started < timeout:
        time.sleep(0.5)
        events = db.event_count()
    waited = time.monotonic() - started
    with urllib.request.urlopen(receiver.url + "/received", timeout=30) as response:  # noqa: S310
        dump = orjson.loads(response.read())
    return delivery_result(
        db.event_ids(),
        dump["entries"],
        requests=dump["requests"],
        invalid=dump["invalid"],
        waited_s=waited,
    )


def delivery_result(
    event_ids: Sequence[str],
    entries: Sequence[Sequence[Any]],
    *,
    requests: int,
    invalid: int,
    waited_s: float,
) -> WebhookDelivery:
    """The deliveries against the events: ``entries`` are the receiver's ``[webhook-id,
    receive time (epoch s), created_at or None]`` in arrival order."""
    first: dict[str, tuple[float, str | None]] = {}
    for webhook_id, at, created_at in entries:
        first.setdefault(str(webhook_id), (float(at), created_at))
    known = set(event_ids)
    missing = sorted(known - first.keys())
    lags = sorted(
        max(0.0, at - datetime.fromisoformat(created_at).timestamp()) * 1000
        for webhook_id, (at, created_at) in first.items()
        if webhook_id in known and created_at is not None
    )
    result = WebhookDelivery(
        endpoints=1,
        events=len(known),
        received_requests=requests,
        delivered=len(known) - len(missing),
        undelivered=len(missing),
        duplicates=requests - len(first),
        unknown=len(first.keys() - known),
        invalid_signatures=invalid,
        verified="all",
        lag_ms=DeliveryLag(
            p50=percentile(lags, 50),
            p99=percentile(lags, 99),
            max=lags[-1] if lags else 0.0,
            mean=sum(lags) / len(lags) if lags else 0.0,
        ),
        waited_s=round(waited_s, 1),
        missing_sample=tuple(missing[:MISSING_SHOWN]),
        targets=(),
    )
    return replace(result, targets=delivery_targets(result))


def delivery_targets(result: WebhookDelivery) -> tuple[TargetCheck, ...]:
    return (
        TargetCheck(
            "every event delivered by the end of the run (undelivered = 0)",
            f"{result.delivered:,} of {result.events:,}",
            result.undelivered == 0 and result.events > 0,
        ),
        TargetCheck(
            "every signature verified (standardwebhooks)",
            f"{result.invalid_signatures} invalid",
            result.invalid_signatures == 0,
        ),
    )


def percentile(ordered: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of already sorted values (0 when there are none)."""
    if not ordered:
        return 0.0
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]
