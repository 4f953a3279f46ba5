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
    assert families["bank_operations"] == "counter"
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


def _operations(kind: str, outcome: str) -> float:
    labels = {"kind": kind, "outcome": outcome}
    return REGISTRY.get_sample_value("bank_operations_total", labels) or 0.0


async def test_operations_are_counted_by_kind_and_outcome(
    client: BankClient, deposit_body: MakeDepositBody
) -> None:
    counted = [
        ("capture", "succeeded"),
        ("void", "refused"),
        ("refund", "succeeded"),
        ("refund", "failed"),
        ("refund", "repeat"),
        ("refund", "conflict"),
        ("refund", "refused"),
        ("refund", "rejected"),
    ]
    before = {key: _operations(*key) for key in counted}
    await client.post("/api/v1/deposit", json=deposit_body("m-op", capture=False))
    await client.post("/api/v1/deposit", json=deposit_body("m-5126", "4000000000005126"))
    answers = [
        await client.post(path, json=body)
        for path, body in [
            ("/api/v1/captures", {"reference": "c", "deposit_reference": "m-op", "amount": 500}),
            ("/api/v1/voids", {"reference": "v", "deposit_reference": "m-op"}),
            ("/api/v1/refunds", {"reference": "r", "deposit_reference": "m-op", "amount": 100}),
            ("/api/v1/refunds", {"reference": "r", "deposit_reference": "m-op", "amount": 100}),
            ("/api/v1/refunds", {"reference": "r", "deposit_reference": "m-op", "amount": 101}),
            ("/api/v1/refunds", {"reference": "r2", "deposit_reference": "m-op", "amount": 401}),
            ("/api/v1/refunds", {"reference": "r3", "deposit_reference": "m-op", "amount": "1"}),
            ("/api/v1/refunds", {"reference": "d", "deposit_reference": "m-5126", "amount": 1}),
        ]
    ]
    assert [a.status_code for a in answers] == [201, 409, 201, 200, 409, 422, 422, 201]

    assert {key: _operations(*key) - before[key] for key in counted} == {
        ("capture", "succeeded"): 1,
        ("void", "refused"): 1,
        ("refund", "succeeded"): 1,
        ("refund", "failed"): 1,
        ("refund", "repeat"): 1,
        ("refund", "conflict"): 1,
        ("refund", "refused"): 1,
        ("refund", "rejected"): 1,
    }


async def test_operation_outage_counts_as_unavailable(make_client: ClientFactory) -> None:
    before = _operations("void", "unavailable")
    async with make_client(failure_rate=1) as client:
        answer = await client.post(
            "/api/v1/voids", json={"reference": "v", "deposit_reference": "d"}
        )
        assert answer.status_code == 503
    assert _operations("void", "unavailable") - before == 1
