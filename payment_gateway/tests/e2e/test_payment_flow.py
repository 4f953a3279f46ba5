"""A merchant's view: real gateway and bank processes, a payment of each card outcome."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from .conftest import BANK_AUTH, Stack, mentions_cvv

pytestmark = pytest.mark.e2e

MERCHANT = {"Authorization": "Bearer first_merchant_mock_token"}
CVV = "8317"  # looked for in the logs afterwards


def pay(stack: Stack, number: str, **headers: str) -> httpx.Response:
    body = {
        "card": {
            "number": number,
            "expiry_month": 12,
            "expiry_year": 2042,
            "cvv": CVV,
            "holder_name": "E2E Holder",
        },
        "amount": 4200,
        "currency": "eur",
        "reference": "e2e-order",
    }
    return httpx.post(
        f"{stack.gateway.url}/api/v1/payments", json=body, headers=MERCHANT | headers, timeout=10
    )


@pytest.mark.parametrize(
    ("number", "status", "reason"),
    [
        ("4242424242424242", "succeeded", None),
        ("4000000000000002", "failed", "insufficient_funds"),
        ("4111111111111111", "failed", "card_not_supported"),
    ],
)
def test_each_final_outcome(stack: Stack, number: str, status: str, reason: str | None) -> None:
    response = pay(stack, number)
    assert response.status_code == 201, response.text
    payment = response.json()
    assert (payment["status"], payment["decline_reason"], payment["currency"]) == (
        status,
        reason,
        "EUR",
    )
    bank_view = httpx.get(
        f"{stack.bank.url}/api/v1/deposits/{payment['id']}", headers=BANK_AUTH
    ).json()
    assert bank_view["transaction_id"] == payment["tracking_id"]
    read = httpx.get(f"{stack.gateway.url}{response.headers['location']}", headers=MERCHANT)
    assert read.json() == payment


def test_pending_payment_is_settled_by_the_reconciler(stack: Stack) -> None:
    created = pay(stack, "4000000000009995")
    assert created.status_code == 201
    assert created.json()["status"] == "processing"
    assert created.json()["code"] == "200"

    deadline = time.monotonic() + 20
    status = "processing"
    while status == "processing" and time.monotonic() < deadline:
        time.sleep(0.3)
        read = httpx.get(f"{stack.gateway.url}{created.headers['location']}", headers=MERCHANT)
        status = read.json()["status"]
    assert status == "succeeded"
    assert read.json()["code"] == "0"


def test_idempotent_retry_over_http(stack: Stack) -> None:
    first = pay(stack, "4242424242424242", **{"Idempotency-Key": "e2e-retry-1"})
    second = pay(stack, "4242424242424242", **{"Idempotency-Key": "e2e-retry-1"})
    assert first.status_code == second.status_code == 201
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.json()["id"] == first.json()["id"]


def test_no_card_data_in_any_log(stack: Stack) -> None:
    # Make sure at least one payment and one rejected request went through the logs.
    assert pay(stack, "4242424242424242").status_code == 201
    bad = httpx.post(
        f"{stack.gateway.url}/api/v1/payments",
        json={"card": {"number": "4242424242424241", "cvv": CVV}},
        headers=MERCHANT,
    )
    assert bad.status_code == 422
    assert "4242424242424241" not in bad.text  # errors never echo the input
    for service in (stack.gateway, stack.bank):
        log = service.log()
        assert "payment" in log.lower() or "deposit" in log.lower() or service is stack.bank
        for pan in ("4242424242424242", "4242424242424241", "4000000000000002", "4111111111111111"):
            assert pan not in log, f"PAN in the {service.name} log"
        assert not mentions_cvv(log, CVV), f"CVV in {service.name} log"
        assert "first_merchant_mock_token" not in log


def test_state_changes_are_json_log_lines_with_request_ids(stack: Stack) -> None:
    response = pay(stack, "4242424242424242", **{"X-Request-ID": "e2e-trace-7"})
    assert response.headers["X-Request-ID"] == "e2e-trace-7"
    events = []
    for line in stack.gateway.log().splitlines():
        if line.startswith("{"):
            events.append(json.loads(line))  # every structured line is valid JSON
    mine = [e for e in events if e.get("payment_id") == response.json()["id"]]
    assert [e["status"] for e in mine] == ["init", "succeeded"]
    assert all(e["event"] == "payment_status_changed" for e in mine)
    assert all(e["request_id"] == "e2e-trace-7" for e in mine)


def test_the_bank_refuses_callers_without_the_shared_key(stack: Stack) -> None:
    # The gateway's payments above went through, so it sent the key; anyone else is refused.
    body = {
        "reference": "intruder-1",
        "card": {"number": "4242424242424242", "expiry": "12/2042", "cvv": "123"},
        "amount": 100,
        "currency": "EUR",
    }
    refused = httpx.post(f"{stack.bank.url}/api/v1/deposit", json=body)
    assert refused.status_code == 401
    assert refused.headers["content-type"] == "application/problem+json"
    assert httpx.get(f"{stack.bank.url}/api/v1/deposits/intruder-1").status_code == 401
    assert (
        httpx.get(f"{stack.bank.url}/api/v1/deposits/intruder-1", headers=BANK_AUTH).status_code
        == 404
    )
