"""/metrics: deposits counted by outcome, request latency by route template."""

from __future__ import annotations

import pytest
from bank_simulator.metrics import deposit_outcome
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from ..conftest import BankClient, ClientFactory, MakeDepositBody


def _deposits(outcome: str) -> float:
    return REGISTRY.get_sample_value("bank_deposits_total", {"outcome": outcome}) or 0.0


def _latency_count(method: str, route: str) -> float:
    labels = {"method": method, "route": route}
    return REGISTRY.get_sample_value("bank_http_request_duration_seconds_count", labels) or 0.0


async def test_deposits_are_counted_by_outcome(
    client: BankClient, deposit_body: MakeDepositBody
) -> None:
    before = {o: _deposits(o) for o in ("created", "repeat", "conflict", "rejected")}

    assert (await client.post("/api/v1/deposit", json=deposit_body("m-1"))).status_code == 201
    assert (await client.post("/api/v1/deposit", json=deposit_body("m-1"))).status_code == 200
    conflict = deposit_body("m-1", amount=5)
    assert (await client.post("/api/v1/deposit", json=conflict)).status_code == 409
    invalid = deposit_body("m-2", amount="ten")
    assert (await client.post("/api/v1/deposit", json=invalid)).status_code == 422

    assert {o: _deposits(o) - before[o] for o in before} == {
        "created": 1,
        "repeat": 1,
        "conflict": 1,
        "rejected": 1,
    }


async def test_simulated_outage_counts_as_unavailable(
    make_client: ClientFactory, deposit_body: MakeDepositBody
) -> None:
    before = _deposits("unavailable")
    async with make_client(failure_rate=1) as client:
        assert (await client.post("/api/v1/deposit", json=deposit_body())).status_code == 503
    assert _deposits("unavailable") - before == 1


async def test_latency_is_labelled_by_route_template_not_path(
    client: BankClient, deposit_body: MakeDepositBody
) -> None:
    route = "/api/v1/deposits/{reference:path}"
    before = _latency_count("GET", route)
    await client.get("/api/v1/deposits/first-unknown-reference")
    await client.get("/api/v1/deposits/second-unknown-reference")
    assert _latency_count("GET", route) - before == 2
    assert _latency_count("GET", "/api/v1/deposits/first-unknown-reference") == 0


async def test_metrics_endpoint_serves_the_prometheus_text_format(
    client: BankClient, deposit_body: MakeDepositBody
) -> None:
    await client.post("/api/v1/deposit", json=deposit_body("m-text"))
    before = _latency_count("GET", "unmatched")

    response = await client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    families = {f.name: f.type for f in text_string_to_metric_families(response.text)}
    assert families["bank_deposits"] == "counter"
    assert families["bank_http_request_duration_seconds"] == "histogram"
    # Scrapes are not requests worth timing, and /metrics is not part of the API contract.
    assert _latency_count("GET", "unmatched") == before
    assert _latency_count("GET", "/metrics") == 0
    assert "/metrics" not in (await client.get("/openapi.json")).json()["paths"]


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (201, "created"),
        (200, "repeat"),
        (409, "conflict"),
        (503, "unavailable"),
        (413, "rejected"),
        (415, "rejected"),
        (422, "rejected"),
        (500, "error"),
    ],
)
def test_deposit_outcome_names_each_documented_answer(status: int, outcome: str) -> None:
    assert deposit_outcome(status) == outcome
