"""What operators see: Prometheus metrics, request ids, and logs free of card data."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fakes import FakeBank
from payment_gateway.main import create_app
from prometheus_client.parser import text_string_to_metric_families

from .conftest import MERCHANT_ONE, Gateway, free_port, gateway_settings, payment_body


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    return [
        (sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the Prometheus text format (0 when absent)."""
    for sample_labels, value in samples(text, name):
        if all(sample_labels.get(key) == value_ for key, value_ in labels.items()):
            return value
    return 0.0


@dataclass
class Monitored:
    gateway: Gateway
    metrics_url: str

    async def scrape(self) -> str:
        async with httpx.AsyncClient() as client:
            response = await client.get(self.metrics_url)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        return response.text


@pytest.fixture
async def monitored(database_url: str, tmp_path: Path) -> AsyncIterator[Monitored]:
    """A gateway serving its metrics on a port of their own, as in production."""
    port = free_port()
    settings = gateway_settings(database_url, tmp_path, metrics_port=port)
    app = create_app(settings, bank=FakeBank(), run_reconciler=False)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            gateway = Gateway(client, FakeBank(), app, settings)
            yield Monitored(gateway, f"http://127.0.0.1:{port}/metrics")


async def test_metrics_count_payments_bank_calls_and_requests(monitored: Monitored) -> None:
    client = monitored.gateway.client
    before = await monitored.scrape()
    declined = await client.post(
        "/api/v1/payments", json=payment_body("4000000000000002"), headers=MERCHANT_ONE
    )
    assert declined.status_code == 201
    after = await monitored.scrape()

    def failed_total(text: str) -> float:
        found = samples(text, "gateway_payments_total")
        return sum(value for labels, value in found if labels["status"] == "failed")

    assert failed_total(after) == failed_total(before) + 1
    assert (
        metric(
            after,
            "gateway_http_requests_total",
            method="POST",
            route="/api/v1/payments",
            status="201",
        )
        >= 1
    )
    assert "gateway_reconciler_oldest_open_payment_age_seconds" in after
    assert "gateway_bank_call_errors_total" in after
    # Routes are labelled by template, never by id, and nothing names a merchant: label
    # values stay a small fixed set, and no merchant's volume can be read off the metrics.
    assert declined.json()["id"] not in after
    assert "merchant" not in after


async def test_metrics_are_not_served_on_the_merchant_port(monitored: Monitored) -> None:
    client = monitored.gateway.client
    assert (await client.get("/metrics")).status_code == 404
    spec = (await client.get("/openapi.json")).json()
    assert "/metrics" not in spec["paths"]
    assert "gateway_payments_total" in await monitored.scrape()


@pytest.mark.parametrize(
    ("sent", "kept"),
    [("abc-123", True), ("a" * 129, False), ("bad id\n", False)],
)
async def test_request_id_is_propagated_or_generated(
    gateway: Gateway, sent: str, kept: bool
) -> None:
    response = await gateway.client.get("/healthz", headers={"X-Request-ID": sent})
    echoed = response.headers["x-request-id"]
    assert (echoed == sent) is kept
    assert re.fullmatch(r"[A-Za-z0-9._:\-]{1,128}", echoed)


async def test_request_id_reaches_log_lines(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="payment_gateway"):
        await gateway.client.post(
            "/api/v1/payments",
            json=payment_body(),
            headers=MERCHANT_ONE | {"X-Request-ID": "trace-me-42"},
        )
    changes = [r for r in caplog.records if "payment_status_changed" in str(r.msg)]
    assert len(changes) == 2  # init, then succeeded
    assert all("trace-me-42" in str(r.msg) for r in changes)
