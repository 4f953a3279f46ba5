"""POST /api/v1/deposit and GET /api/v1/deposits/{reference}, in process."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import httpx
import pytest

from ..conftest import BankClient, ClientFactory, FakeClock, MakeDepositBody

SUCCESS = "4242424242424242"
INSUFFICIENT_FUNDS = "4000000000000002"
PENDING = "4000000000009995"
REFUND_DECLINED = "4000000000005126"


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert {"type", "title", "status", "detail"} <= body.keys()
    return body


@pytest.mark.parametrize(
    ("number", "status", "code", "reason", "captured"),
    [
        (SUCCESS, "succeeded", "0", None, 1000),
        (REFUND_DECLINED, "succeeded", "0", None, 1000),
        (INSUFFICIENT_FUNDS, "failed", "100", "insufficient_funds", 0),
        (PENDING, "pending", "200", None, 0),
        ("5555555555554444", "failed", "100", "card_not_supported", 0),
        ("4000000000000010", "failed", "100", "card_not_supported", 0),
    ],
)
async def test_each_card_gets_its_outcome(
    client: BankClient,
    deposit_body: MakeDepositBody,
    number: str,
    status: str,
    code: str,
    reason: str | None,
    captured: int,
) -> None:
    response = await client.post("/api/v1/deposit", json=deposit_body("order-1", number))

    assert response.status_code == 201
    assert response.headers["content-type"] == "application/json"
    assert response.headers["location"] == "/api/v1/deposits/order-1"
    body = response.json()
    assert uuid.UUID(body["transaction_id"]).version == 4
    assert body == {
        "transaction_id": body["transaction_id"],
        "reference": "order-1",
        "status": status,
        "code": code,
        "reason": reason,
        "captured_amount": captured,
        "refunded_amount": 0,
    }
    inquiry = await client.get("/api/v1/deposits/order-1")
    assert inquiry.status_code == 200
    assert inquiry.json() == body


async def test_holder_name_is_optional_and_may_be_null(
    client: BankClient, deposit_body: MakeDepositBody
) -> None:
    body = deposit_body()
    del body["card"]["holder_name"]
    assert (await client.post("/api/v1/deposit", json=body)).status_code == 201
    body = deposit_body("ref-2", holder_name=None)
    assert (await client.post("/api/v1/deposit", json=body)).status_code == 201


async def test_pending_settles_to_succeeded_after_the_delay(
    make_client: ClientFactory, deposit_body: MakeDepositBody, clock: FakeClock
) -> None:
    async with make_client(clock=clock, pending_settle_seconds=5) as client:
        created = (await client.post("/api/v1/deposit", json=deposit_body("p", PENDING))).json()
        assert created["status"] == "pending"

        clock.advance(4.9)
        assert (await client.get("/api/v1/deposits/p")).json()["status"] == "pending"

        clock.advance(0.1)
        settled = (await client.get("/api/v1/deposits/p")).json()
        assert settled == created | {
            "status": "succeeded",
            "code": "0",
            "reason": None,
            "captured_amount": 1000,
        }

        repeat = await client.post("/api/v1/deposit", json=deposit_body("p", PENDING))
        assert repeat.status_code == 200
        assert repeat.json() == settled


async def test_pending_settles_in_real_time(
    make_client: ClientFactory, deposit_body: MakeDepositBody
) -> None:
    async with make_client(pending_settle_seconds=0.05) as client:
        created = await client.post("/api/v1/deposit", json=deposit_body("p", PENDING))
        assert created.json()["status"] == "pending"
        await asyncio.sleep(0.06)
        assert (await client.get("/api/v1/deposits/p")).json()["status"] == "succeeded"


async def test_repeat_returns_the_first_transaction_with_200(
    client: BankClient, deposit_body: MakeDepositBody
) -> None:
    first = await client.post("/api/v1/deposit", json=deposit_body("order-9", INSUFFICIENT_FUNDS))
    # Only card number, amount and currency identify the deposit; the rest may differ.
    retry = deposit_body("order-9", INSUFFICIENT_FUNDS, cvv="999", holder_name=None)
    second = await client.post("/api/v1/deposit", json=retry)

    assert first.status_code == 201
    assert second.status_code == 200
    assert second.json() == first.json()
    assert len(client.ledger) == 1


@pytest.mark.parametrize(
    "change",
    [{"number": INSUFFICIENT_FUNDS}, {"amount": 1001}, {"currency": "EUR"}, {"capture": False}],
    ids=["card", "amount", "currency", "capture"],
)
async def test_reusing_a_reference_for_another_deposit_is_409(
    client: BankClient, deposit_body: MakeDepositBody, change: dict[str, Any]
) -> None:
    first = await client.post("/api/v1/deposit", json=deposit_body("order-7"))
    conflicting = await client.post("/api/v1/deposit", json=deposit_body("order-7", **change))

    body = assert_problem(conflicting, 409)
    assert "reference" in body["detail"]
    assert body["errors"] == [{"field": "reference", "message": "already used for another request"}]
    assert (await client.get("/api/v1/deposits/order-7")).json() == first.json()


async def test_unknown_reference_is_404(client: BankClient) -> None:
    body = assert_problem(await client.get("/api/v1/deposits/never-seen"), 404)
    assert body["type"] != "about:blank"


async def test_reference_with_a_slash_can_be_read_back(
    client: BankClient, deposit_body: MakeDepositBody
) -> None:
    created = await client.post("/api/v1/deposit", json=deposit_body("shop/42 ä"))
    assert created.headers["location"] == "/api/v1/deposits/shop%2F42%20%C3%A4"
    inquiry = await client.get(created.headers["location"])
    assert inquiry.status_code == 200
    assert inquiry.json() == created.json()


async def test_failure_rate_one_answers_503_and_records_nothing(
    make_client: ClientFactory, deposit_body: MakeDepositBody
) -> None:
    async with make_client(failure_rate=1.0) as client:
        for _ in range(5):
            response = await client.post("/api/v1/deposit", json=deposit_body("f"))
            assert_problem(response, 503)
            assert response.headers["retry-after"] == "1"
        assert len(client.ledger) == 0
        assert (await client.get("/api/v1/deposits/f")).status_code == 404


async def test_failure_rate_zero_never_fails(
    make_client: ClientFactory, deposit_body: MakeDepositBody
) -> None:
    async with make_client(failure_rate=0.0) as client:
        for i in range(50):
            response = await client.post("/api/v1/deposit", json=deposit_body(f"r{i}"))
            assert response.status_code == 201


async def test_failure_rate_applies_to_a_share_of_deposits(
    make_client: ClientFactory, deposit_body: MakeDepositBody, monkeypatch: pytest.MonkeyPatch
) -> None:
    draws = iter([0.1, 0.9, 0.29, 0.3])
    monkeypatch.setattr("bank_simulator.app.random.random", lambda: next(draws))
    async with make_client(failure_rate=0.3) as client:
        codes = [
            (await client.post("/api/v1/deposit", json=deposit_body(f"r{i}"))).status_code
            for i in range(4)
        ]
    assert codes == [503, 201, 503, 201]


async def test_latency_is_added_after_the_deposit_is_recorded(
    make_client: ClientFactory, deposit_body: MakeDepositBody
) -> None:
    async with make_client(latency_ms=300) as client:
        loop = asyncio.get_running_loop()
        started = loop.time()
        deposit = asyncio.create_task(client.post("/api/v1/deposit", json=deposit_body("slow")))
        await asyncio.sleep(0.1)

        assert not deposit.done()
        assert "slow" in client.ledger  # charged although the caller is still waiting
        inquiry = await client.get("/api/v1/deposits/slow")  # inquiries are not delayed
        assert inquiry.status_code == 200

        response = await deposit
        assert response.status_code == 201
        assert loop.time() - started >= 0.3
        assert response.json()["transaction_id"] == inquiry.json()["transaction_id"]


async def test_oldest_transactions_are_dropped_beyond_the_bound(
    make_client: ClientFactory, deposit_body: MakeDepositBody
) -> None:
    async with make_client(max_transactions=3) as client:
        ids = {}
        for ref in ["a", "b", "c", "d", "e"]:
            ids[ref] = (await client.post("/api/v1/deposit", json=deposit_body(ref))).json()
        assert len(client.ledger) == 3
        for ref in ["a", "b"]:
            assert (await client.get(f"/api/v1/deposits/{ref}")).status_code == 404
        for ref in ["c", "d", "e"]:
            assert (await client.get(f"/api/v1/deposits/{ref}")).json() == ids[ref]


async def test_concurrent_duplicates_make_one_transaction(
    make_client: ClientFactory, deposit_body: MakeDepositBody
) -> None:
    async with make_client(latency_ms=20) as client:
        responses = await asyncio.gather(
            *(client.post("/api/v1/deposit", json=deposit_body("dup")) for _ in range(50))
        )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 49 + [201]
    assert len({r.json()["transaction_id"] for r in responses}) == 1
    assert len(client.ledger) == 1


async def test_concurrent_distinct_deposits_are_all_recorded(
    client: BankClient, deposit_body: MakeDepositBody
) -> None:
    responses = await asyncio.gather(
        *(client.post("/api/v1/deposit", json=deposit_body(f"r{i}")) for i in range(50))
    )
    assert all(r.status_code == 201 for r in responses)
    assert len({r.json()["transaction_id"] for r in responses}) == 50


async def test_card_number_and_cvv_are_never_logged_or_kept(
    client: BankClient, deposit_body: MakeDepositBody, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    body = deposit_body("log-me", "4000000000009995", cvv="8731")
    await client.post("/api/v1/deposit", json=body)
    await client.post("/api/v1/deposit", json=body)
    await client.post("/api/v1/deposit", json=deposit_body("log-me", amount=5, cvv="8731"))

    assert "log-me" in caplog.text
    assert "4000000000009995" not in caplog.text
    assert "8731" not in caplog.text
    stored = client.ledger.get("log-me")
    assert "4000000000009995" not in repr(stored)
    assert "8731" not in repr(stored)


async def test_healthz(client: BankClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
