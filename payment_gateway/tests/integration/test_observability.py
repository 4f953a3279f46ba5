"""What operators see: Prometheus metrics, request ids, and logs free of card data."""

from __future__ import annotations

import logging
import re

import pytest
from payment_gateway.logging_setup import redact_text
from prometheus_client.parser import text_string_to_metric_families

from .conftest import MERCHANT_ONE, Gateway, payment_body


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


async def test_metrics_count_payments_bank_calls_and_requests(gateway: Gateway) -> None:
    before = (await gateway.client.get("/metrics")).text
    declined = await gateway.client.post(
        "/api/v1/payments", json=payment_body("4000000000000002"), headers=MERCHANT_ONE
    )
    assert declined.status_code == 201
    response = await gateway.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    after = response.text

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
    # Routes are labelled by template, never by id (bounded label cardinality).
    assert declined.json()["id"] not in after


async def test_metrics_are_public_but_not_in_the_api_schema(gateway: Gateway) -> None:
    spec = (await gateway.client.get("/openapi.json")).json()
    assert "/metrics" not in spec["paths"]
    assert (await gateway.client.get("/metrics")).status_code == 200  # no bearer needed


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


@pytest.mark.parametrize(
    ("text", "leak"),
    [
        ("charging 4242424242424242 now", "4242424242424242"),
        ("card=4000 0000 0000 0002", "4000 0000 0000 0002"),
        ("card=4000-0000-0000-9995!", "4000-0000-0000-9995"),
        ("Authorization: Bearer first_merchant_mock_token", "first_merchant_mock_token"),
    ],
)
def test_redaction_guard_masks_card_numbers_and_tokens(text: str, leak: str) -> None:
    assert leak not in redact_text(text)


def test_redaction_guard_leaves_ordinary_numbers_alone() -> None:
    line = "amount 100000000000001 payment 1234567890123 at 2026-11-25"  # not Luhn-valid
    assert redact_text(line) == line
