"""BANK_API_KEY: a shared-secret bearer on every /api/v1 route, compared in constant time."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from bank_simulator.auth import bearer_token

from ..conftest import BankClient, ClientFactory, MakeDepositBody

KEY = "simulator-shared-secret-0123456789abcdef"


@pytest.fixture
async def guarded(make_client: ClientFactory) -> AsyncIterator[BankClient]:
    async with make_client(bank_api_key=KEY) as client:
        yield client


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer ", f"Basic {KEY}", "Bearer wrong-key", f"Bearer {KEY}x", KEY],
)
async def test_deposit_without_the_key_is_refused(
    guarded: BankClient, deposit_body: MakeDepositBody, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = await guarded.post("/api/v1/deposit", json=deposit_body(), headers=headers)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"] == "Bearer"
    problem = response.json()
    assert problem["status"] == 401
    assert problem["type"].endswith("unauthorized")
    assert len(guarded.ledger) == 0  # nothing was recorded


async def test_inquiry_without_the_key_is_refused(
    guarded: BankClient, deposit_body: MakeDepositBody
) -> None:
    headers = {"Authorization": f"Bearer {KEY}"}
    assert (await guarded.post("/api/v1/deposit", json=deposit_body(), headers=headers)).is_success
    assert (await guarded.get("/api/v1/deposits/ref-1")).status_code == 401
    answer = await guarded.get("/api/v1/deposits/ref-1", headers=headers)
    assert answer.status_code == 200


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
async def test_deposit_with_the_key_is_accepted(
    guarded: BankClient, deposit_body: MakeDepositBody, scheme: str
) -> None:
    headers = {"Authorization": f"{scheme} {KEY}"}
    response = await guarded.post("/api/v1/deposit", json=deposit_body(), headers=headers)
    assert response.status_code == 201


async def test_health_needs_no_key(guarded: BankClient) -> None:
    assert (await guarded.get("/healthz")).status_code == 200


async def test_without_a_configured_key_everything_is_open(
    client: BankClient, deposit_body: MakeDepositBody
) -> None:
    assert (await client.post("/api/v1/deposit", json=deposit_body())).status_code == 201


def test_bearer_token_parsing() -> None:
    assert bearer_token(b"Bearer abc") == b"abc"
    assert bearer_token(b"bearer   abc ") == b"abc"
    assert bearer_token(b"Basic abc") is None
    assert bearer_token(b"Bearer") is None


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/v1/captures"),
        ("POST", "/api/v1/voids"),
        ("POST", "/api/v1/refunds"),
        ("GET", "/api/v1/captures/op"),
        ("GET", "/api/v1/voids/op"),
        ("GET", "/api/v1/refunds/op"),
    ],
)
async def test_operations_without_the_key_are_refused(
    guarded: BankClient, deposit_body: MakeDepositBody, method: str, path: str
) -> None:
    headers = {"Authorization": f"Bearer {KEY}"}
    body = deposit_body(capture=path.endswith("refunds"))
    assert (await guarded.post("/api/v1/deposit", json=body, headers=headers)).status_code == 201
    operation = {"reference": "op", "deposit_reference": "ref-1", "amount": 10}

    refused = await guarded.request(method, path, json=operation if method == "POST" else None)
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == "Bearer"
    assert len(guarded.ledger) == 1  # only the deposit: the operation was not applied

    if method == "POST":
        accepted = await guarded.post(path, json=operation, headers=headers)
        assert accepted.status_code == 201
    else:
        assert (await guarded.get(path, headers=headers)).status_code == 404  # reached the route
