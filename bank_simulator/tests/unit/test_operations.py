"""Captures, voids and refunds (POST /api/v1/{captures,voids,refunds} and their inquiries),
in process: every rule of the bank contract, replays and conflicts, and the race for the last
amount of a deposit."""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from ..conftest import BankClient, ClientFactory, FakeClock, MakeDepositBody

SUCCESS = "4242424242424242"
INSUFFICIENT_FUNDS = "4000000000000002"
PENDING = "4000000000009995"
REFUND_DECLINED = "4000000000005126"

COLLECTION = {"capture": "captures", "void": "voids", "refund": "refunds"}


def assert_problem(
    response: httpx.Response, status: int, field: str | None = None
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert {"type", "title", "status", "detail"} <= body.keys()
    if field is not None:
        assert [error["field"] for error in body["errors"]] == [field]
    return body


async def deposit(
    client: BankClient,
    deposit_body: MakeDepositBody,
    reference: str,
    number: str = SUCCESS,
    amount: int = 100,
    capture: bool | None = None,
) -> dict[str, Any]:
    body = deposit_body(reference, number, amount=amount, capture=capture)
    response = await client.post("/api/v1/deposit", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def operate(
    client: BankClient, kind: str, reference: str, deposit_reference: str, amount: int | None = None
) -> httpx.Response:
    body: dict[str, object] = {"reference": reference, "deposit_reference": deposit_reference}
    if amount is not None:
        body["amount"] = amount
    return await client.post(f"/api/v1/{COLLECTION[kind]}", json=body)


async def deposit_state(client: BankClient, reference: str) -> dict[str, Any]:
    response = await client.get(f"/api/v1/deposits/{reference}")
    assert response.status_code == 200
    state: dict[str, Any] = response.json()
    return state


# --- authorization only -------------------------------------------------------------------


async def test_capture_false_only_authorizes(
    client: BankClient, deposit_body: MakeDepositBody
) -> None:
    created = await deposit(client, deposit_body, "auth-1", amount=1000, capture=False)

    assert created["status"] == "authorized"
    assert created["code"] == "0"
    assert created["reason"] is None
    assert (created["captured_amount"], created["refunded_amount"]) == (0, 0)
    assert await deposit_state(client, "auth-1") == created


async def test_capture_true_is_the_default(
    client: BankClient, deposit_body: MakeDepositBody
) -> None:
    explicit = await deposit(client, deposit_body, "explicit", amount=700, capture=True)
    implicit = await deposit(client, deposit_body, "implicit", amount=700)
    for answer in (explicit, implicit):
        assert (answer["status"], answer["captured_amount"]) == ("succeeded", 700)


async def test_authorization_replay_is_200_and_a_capture_flip_is_409(
    client: BankClient, deposit_body: MakeDepositBody
) -> None:
    first = await deposit(client, deposit_body, "auth-2", amount=1000, capture=False)
    replay = await client.post("/api/v1/deposit", json=deposit_body("auth-2", capture=False))
    assert replay.status_code == 200
    assert replay.json() == first

    flipped = await client.post("/api/v1/deposit", json=deposit_body("auth-2", capture=True))
    assert_problem(flipped, 409, "reference")
    assert (await deposit_state(client, "auth-2"))["status"] == "authorized"


@pytest.mark.parametrize(
    ("number", "reason"),
    [(INSUFFICIENT_FUNDS, "insufficient_funds"), ("5555555555554444", "card_not_supported")],
)
async def test_declines_stay_declines_without_capture(
    client: BankClient, deposit_body: MakeDepositBody, number: str, reason: str
) -> None:
    created = await deposit(client, deposit_body, "declined", number, capture=False)
    assert (created["status"], created["code"], created["reason"]) == ("failed", "100", reason)


async def test_pending_without_capture_settles_to_authorized(
    make_client: ClientFactory, deposit_body: MakeDepositBody, clock: FakeClock
) -> None:
    async with make_client(clock=clock, pending_settle_seconds=5) as client:
        created = await deposit(client, deposit_body, "p", PENDING, capture=False)
        assert created["status"] == "pending"
        refused = await operate(client, "capture", "cap-early", "p", 10)
        assert "pending" in assert_problem(refused, 409, "deposit_reference")["detail"]

        clock.advance(5)
        settled = await deposit_state(client, "p")
        assert (settled["status"], settled["code"], settled["captured_amount"]) == (
            "authorized",
            "0",
            0,
        )
        assert (await operate(client, "capture", "cap-late", "p", 60)).status_code == 201
        assert (await deposit_state(client, "p"))["captured_amount"] == 60


# --- capture --------------------------------------------------------------------------------


async def test_partial_capture_then_refunds(
    client: BankClient, deposit_body: MakeDepositBody
) -> None:
    await deposit(client, deposit_body, "order", amount=1000, capture=False)

    capture = await operate(client, "capture", "cap-1", "order", 600)
    assert capture.status_code == 201
    assert capture.headers["location"] == "/api/v1/captures/cap-1"
    body = capture.json()
    assert uuid.UUID(body["transaction_id"]).version == 4
    created_at = datetime.fromisoformat(body["created_at"])
    assert body["created_at"].endswith("Z")
    assert abs(datetime.now(UTC) - created_at) < timedelta(seconds=5)
    assert body == {
        "reference": "cap-1",
        "deposit_reference": "order",
        "kind": "capture",
        "amount": 600,
        "status": "succeeded",
        "code": "0",
        "reason": None,
        "transaction_id": body["transaction_id"],
        "created_at": body["created_at"],
    }
    state = await deposit_state(client, "order")
    assert (state["status"], state["captured_amount"], state["refunded_amount"]) == (
        "succeeded",
        600,
        0,
    )

    # The released 400 cannot be refunded: only what was captured can.
    too_much = await operate(client, "refund", "ref-1", "order", 601)
    assert "600" in assert_problem(too_much, 422, "amount")["detail"]
    assert (await operate(client, "refund", "ref-2", "order", 200)).status_code == 201
    assert (await operate(client, "refund", "ref-3", "order", 400)).status_code == 201
    assert (await deposit_state(client, "order"))["refunded_amount"] == 600
    assert (await deposit_state(client, "order"))["status"] == "succeeded"  # refunds keep it
    assert_problem(await operate(client, "refund", "ref-4", "order", 1), 422, "amount")


async def test_capture_of_the_whole_authorization(
    client: BankClient, deposit_body: MakeDepositBody
) -> None:
    await deposit(client, deposit_body, "full", amount=1000, capture=False)
    assert (await operate(client, "capture", "cap", "full", 1000)).status_code == 201
    assert (await deposit_state(client, "full"))["captured_amount"] == 1000


async def test_capture_above_the_authorization_is_422(
    client: BankClient, deposit_body: MakeDepositBody
) -> None:
    await deposit(client, deposit_body, "auth", amount=1000, capture=False)

    body = assert_problem(await operate(client, "capture", "cap", "auth", 1001), 422, "amount")
    assert "1000" in body["detail"]
    assert body["errors"][0]["message"] == "must be at most 1000"
    assert (await deposit_state(client, "auth"))["status"] == "authorized"
    assert (await client.get("/api/v1/captures/cap")).status_code == 404  # nothing recorded


async def test_only_one_capture_per_deposit(
    client: BankClient, deposit_body: MakeDepositBody
) -> None:
    await deposit(client, deposit_body, "once", amount=1000, capture=False)
    assert (await operate(client, "capture", "cap-1", "once", 100)).status_code == 201

    second = await operate(client, "capture", "cap-2", "once", 100)
    body = assert_problem(second, 409, "deposit_reference")
    assert "succeeded" in body["detail"]
    assert body["type"] == "urn:bank-simulator:problem:deposit-status-conflict"
    assert (await deposit_state(client, "once"))["captured_amount"] == 100


@pytest.mark.parametrize(
    ("number", "capture", "status"),
    [
        (SUCCESS, None, "succeeded"),  # already captured at once
        (INSUFFICIENT_FUNDS, False, "failed"),
        (PENDING, False, "pending"),
    ],
)
async def test_capture_needs_an_authorized_deposit(
    client: BankClient,
    deposit_body: MakeDepositBody,
    number: str,
    capture: bool | None,
    status: str,
) -> None:
    await deposit(client, deposit_body, "d", number, capture=capture)
    body = assert_problem(
        await operate(client, "capture", "cap", "d", 10), 409, "deposit_reference"
    )
    assert f"is {status}" in body["detail"]


# --- void -----------------------------------------------------------------------------------


async def test_void_then_capture_is_refused(
    client: BankClient, deposit_body: MakeDepositBody
) -> None:
    await deposit(client, deposit_body, "hold", amount=1000, capture=False)

    void = await operate(client, "void", "void-1", "hold")
    assert void.status_code == 201
    assert void.headers["location"] == "/api/v1/voids/void-1"
    body = void.json()
    assert (body["kind"], body["amount"], body["status"], body["code"]) == (
        "void",
        1000,
        "succeeded",
        "0",
    )
    state = await deposit_state(client, "hold")
    assert (state["status"], state["captured_amount"]) == ("voided", 0)

    capture = await operate(client, "capture", "cap", "hold", 100)
    assert "voided" in assert_problem(capture, 409, "deposit_reference")["detail"]
    refund = await operate(client, "refund", "ref", "hold", 100)
    assert "voided" in assert_problem(refund, 409, "deposit_reference")["detail"]
    again = await operate(client, "void", "void-2", "hold")
    assert_problem(again, 409, "deposit_reference")
    assert (await deposit_state(client, "hold"))["status"] == "voided"


async def test_void_ignores_the_amount(client: BankClient, deposit_body: MakeDepositBody) -> None:
    await deposit(client, deposit_body, "hold", amount=1000, capture=False)
    void = await operate(client, "void", "void", "hold", amount=5)
    assert void.status_code == 201
    assert void.json()["amount"] == 1000
    # Ignored in the comparison too: a replay with another amount is the same void.
    replay = await operate(client, "void", "void", "hold", amount=7)
    assert replay.status_code == 200
    assert replay.json() == void.json()


async def test_void_of_a_captured_deposit_is_409(
    client: BankClient, deposit_body: MakeDepositBody
) -> None:
    await deposit(client, deposit_body, "charged", amount=1000)
    body = assert_problem(await operate(client, "void", "v", "charged"), 409, "deposit_reference")
    assert "is succeeded" in body["detail"]
    assert (await deposit_state(client, "charged"))["status"] == "succeeded"


# --- refund ---------------------------------------------------------------------------------


async def test_refund_of_an_immediate_charge(
    client: BankClient, deposit_body: MakeDepositBody
) -> None:
    await deposit(client, deposit_body, "sale", amount=100)
    refund = await operate(client, "refund", "rma-17", "sale", 30)
    assert refund.status_code == 201
    assert refund.headers["location"] == "/api/v1/refunds/rma-17"
    assert refund.json() | {"transaction_id": None, "created_at": None} == {
        "reference": "rma-17",
        "deposit_reference": "sale",
        "kind": "refund",
        "amount": 30,
        "status": "succeeded",
        "code": "0",
        "reason": None,
        "transaction_id": None,
        "created_at": None,
    }
    assert (await deposit_state(client, "sale"))["refunded_amount"] == 30


async def test_refund_states_what_is_left(
    client: BankClient, deposit_body: MakeDepositBody
) -> None:
    await deposit(client, deposit_body, "sale", amount=100)
    assert (await operate(client, "refund", "r1", "sale", 60)).status_code == 201

    body = assert_problem(await operate(client, "refund", "r2", "sale", 41), 422, "amount")
    assert "40" in body["detail"]
    assert body["errors"][0]["message"] == "must be at most 40"
    assert body["type"] == "urn:bank-simulator:problem:amount-too-large"
    assert (await operate(client, "refund", "r3", "sale", 40)).status_code == 201
    assert (await deposit_state(client, "sale"))["refunded_amount"] == 100


@pytest.mark.parametrize(
    ("number", "capture", "status"),
    [
        (SUCCESS, False, "authorized"),
        (INSUFFICIENT_FUNDS, None, "failed"),
        (PENDING, None, "pending"),
    ],
)
async def test_refund_needs_a_captured_deposit(
    client: BankClient,
    deposit_body: MakeDepositBody,
    number: str,
    capture: bool | None,
    status: str,
) -> None:
    await deposit(client, deposit_body, "d", number, capture=capture)
    body = assert_problem(await operate(client, "refund", "r", "d", 10), 409, "deposit_reference")
    assert f"is {status}" in body["detail"]
    assert (await deposit_state(client, "d"))["refunded_amount"] == 0


async def test_refund_of_a_settled_pending_deposit(
    make_client: ClientFactory, deposit_body: MakeDepositBody, clock: FakeClock
) -> None:
    async with make_client(clock=clock, pending_settle_seconds=1) as client:
        await deposit(client, deposit_body, "p", PENDING, amount=100)
        clock.advance(1)
        assert (await operate(client, "refund", "r", "p", 100)).status_code == 201
        assert (await deposit_state(client, "p"))["refunded_amount"] == 100


async def test_every_refund_of_the_5126_card_is_declined(
    client: BankClient, deposit_body: MakeDepositBody
) -> None:
    charged = await deposit(client, deposit_body, "sale", REFUND_DECLINED, amount=100)
    assert (charged["status"], charged["captured_amount"]) == ("succeeded", 100)

    for reference, amount in [("r1", 30), ("r2", 100)]:
        refund = await operate(client, "refund", reference, "sale", amount)
        assert refund.status_code == 201
        body = refund.json()
        assert (body["status"], body["code"], body["reason"], body["amount"]) == (
            "failed",
            "100",
            "refund_declined",
            amount,
        )
        assert (await client.get(f"/api/v1/refunds/{reference}")).json() == body
    # A declined refund gives nothing back, so it takes nothing from what is left.
    assert (await deposit_state(client, "sale"))["refunded_amount"] == 0
    assert_problem(await operate(client, "refund", "r3", "sale", 101), 422, "amount")
    replay = await operate(client, "refund", "r1", "sale", 30)
    assert (replay.status_code, replay.json()["status"]) == (200, "failed")


async def test_5126_authorizes_and_captures_then_declines_refunds(
    client: BankClient, deposit_body: MakeDepositBody
) -> None:
    await deposit(client, deposit_body, "hold", REFUND_DECLINED, amount=100, capture=False)
    assert (await operate(client, "capture", "cap", "hold", 80)).json()["status"] == "succeeded"
    refund = await operate(client, "refund", "r", "hold", 80)
    assert refund.json()["reason"] == "refund_declined"


async def test_fifty_concurrent_refunds_of_thirty_on_a_hundred(
    make_client: ClientFactory, deposit_body: MakeDepositBody
) -> None:
    # Latency makes every request wait after applying, so all fifty are in flight together.
    async with make_client(latency_ms=20) as client:
        await deposit(client, deposit_body, "race", amount=100)
        responses = await asyncio.gather(
            *(operate(client, "refund", f"r{i}", "race", 30) for i in range(50))
        )
        statuses = sorted(response.status_code for response in responses)
        assert statuses == [201] * 3 + [422] * 47
        assert (await deposit_state(client, "race"))["refunded_amount"] == 90


async def test_concurrent_captures_and_voids_one_wins(
    make_client: ClientFactory, deposit_body: MakeDepositBody
) -> None:
    async with make_client(latency_ms=20) as client:
        await deposit(client, deposit_body, "hold", amount=100, capture=False)
        requests = [operate(client, "capture", f"c{i}", "hold", 10 + i) for i in range(10)]
        requests += [operate(client, "void", f"v{i}", "hold") for i in range(10)]
        responses = await asyncio.gather(*requests)
        winners = [response.json() for response in responses if response.status_code == 201]
        assert len(winners) == 1
        assert sorted(r.status_code for r in responses) == [201] + [409] * 19
        state = await deposit_state(client, "hold")
        if winners[0]["kind"] == "capture":
            assert (state["status"], state["captured_amount"]) == (
                "succeeded",
                winners[0]["amount"],
            )
        else:
            assert state["status"] == "voided"


# --- de-duplication on the operation's reference ---------------------------------------------


@pytest.mark.parametrize("kind", ["capture", "refund"])
async def test_replay_answers_the_first_answer_and_applies_nothing(
    client: BankClient, deposit_body: MakeDepositBody, kind: str
) -> None:
    await deposit(client, deposit_body, "d", amount=100, capture=kind == "refund")
    first = await operate(client, kind, "op", "d", 40)
    before = await deposit_state(client, "d")

    replays = [await operate(client, kind, "op", "d", 40) for _ in range(3)]

    assert first.status_code == 201
    assert [r.status_code for r in replays] == [200, 200, 200]
    assert all(r.json() == first.json() for r in replays)
    assert all(r.headers["location"] == first.headers["location"] for r in replays)
    assert await deposit_state(client, "d") == before


async def test_replay_of_a_capture_after_the_deposit_moved_on(
    client: BankClient, deposit_body: MakeDepositBody
) -> None:
    await deposit(client, deposit_body, "d", amount=100, capture=False)
    first = await operate(client, "capture", "cap", "d", 100)
    assert (await operate(client, "refund", "r", "d", 100)).status_code == 201
    # The deposit is no longer authorized, but the capture's answer is what it was.
    replay = await operate(client, "capture", "cap", "d", 100)
    assert replay.status_code == 200
    assert replay.json() == first.json()


async def test_concurrent_replays_apply_once(
    make_client: ClientFactory, deposit_body: MakeDepositBody
) -> None:
    async with make_client(latency_ms=20) as client:
        await deposit(client, deposit_body, "d", amount=100)
        responses = await asyncio.gather(
            *(operate(client, "refund", "r", "d", 10) for _ in range(50))
        )
        assert sorted(r.status_code for r in responses) == [200] * 49 + [201]
        assert len({r.json()["transaction_id"] for r in responses}) == 1
        assert (await deposit_state(client, "d"))["refunded_amount"] == 10


@pytest.mark.parametrize(
    ("kind", "deposit_reference", "amount"),
    [
        ("refund", "other", 40),  # other deposit
        ("refund", "d", 41),  # other amount
        ("capture", "d", 40),  # other kind
        ("void", "d", None),  # other kind
    ],
    ids=["deposit", "amount", "kind-capture", "kind-void"],
)
async def test_reused_reference_with_other_content_is_409(
    client: BankClient,
    deposit_body: MakeDepositBody,
    kind: str,
    deposit_reference: str,
    amount: int | None,
) -> None:
    await deposit(client, deposit_body, "d", amount=100)
    await deposit(client, deposit_body, "other", amount=100, capture=False)
    first = await operate(client, "refund", "op", "d", 40)

    conflict = await operate(client, kind, "op", deposit_reference, amount)

    body = assert_problem(conflict, 409, "reference")
    assert body["type"] == "urn:bank-simulator:problem:reference-conflict"
    assert (await client.get("/api/v1/refunds/op")).json() == first.json()
    assert (await deposit_state(client, "d"))["refunded_amount"] == 40
    assert (await deposit_state(client, "other"))["status"] == "authorized"


async def test_a_refused_operation_is_not_recorded(
    client: BankClient, deposit_body: MakeDepositBody
) -> None:
    await deposit(client, deposit_body, "d", amount=100)
    assert_problem(await operate(client, "refund", "r", "d", 500), 422, "amount")
    # The same reference may then be used with an amount that passes.
    assert (await operate(client, "refund", "r", "d", 50)).status_code == 201


async def test_operation_and_deposit_references_are_separate(
    client: BankClient, deposit_body: MakeDepositBody
) -> None:
    await deposit(client, deposit_body, "same", amount=100)
    assert (await operate(client, "refund", "same", "same", 10)).status_code == 201
    assert (await deposit_state(client, "same"))["refunded_amount"] == 10


# --- unknown deposit, inquiries ----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["capture", "void", "refund"])
async def test_operation_on_an_unknown_deposit_is_404(client: BankClient, kind: str) -> None:
    response = await operate(client, kind, "op", "never-seen", 10)
    body = assert_problem(response, 404, "deposit_reference")
    assert body["type"] == "urn:bank-simulator:problem:deposit-not-found"
    assert len(client.ledger) == 0


async def test_inquiries_find_each_operation_under_its_own_kind(
    client: BankClient, deposit_body: MakeDepositBody
) -> None:
    await deposit(client, deposit_body, "a", amount=100, capture=False)
    await deposit(client, deposit_body, "b", amount=100, capture=False)
    recorded = {
        "captures": (await operate(client, "capture", "c/1 ä", "a", 100)).json(),
        "voids": (await operate(client, "void", "v-1", "b")).json(),
        "refunds": (await operate(client, "refund", "r-1", "a", 25)).json(),
    }
    for collection, operation in recorded.items():
        path = f"/api/v1/{collection}/{operation['reference']}"
        inquiry = await client.get(path)
        assert inquiry.status_code == 200
        assert inquiry.json() == operation
        for other in recorded.keys() - {collection}:
            wrong_kind = await client.get(f"/api/v1/{other}/{operation['reference']}")
            assert_problem(wrong_kind, 404)
    assert_problem(await client.get("/api/v1/refunds/never-seen"), 404)
    assert (await client.get("/api/v1/captures/c%2F1%20%C3%A4")).json() == recorded["captures"]


# --- fault knobs, memory ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["capture", "void", "refund"])
async def test_failure_rate_one_answers_503_and_records_nothing(
    make_client: ClientFactory, deposit_body: MakeDepositBody, kind: str
) -> None:
    async with make_client(failure_rate=1.0) as client:
        client.ledger.record("d", SUCCESS, 100, "USD", capture=kind == "refund")
        response = await operate(client, kind, "op", "d", 10)
        assert_problem(response, 503)
        assert response.headers["retry-after"] == "1"
        assert (await client.get(f"/api/v1/{COLLECTION[kind]}/op")).status_code == 404
        state = await deposit_state(client, "d")
        assert state["status"] == ("succeeded" if kind == "refund" else "authorized")
        assert (state["captured_amount"], state["refunded_amount"]) == (
            (100, 0) if kind == "refund" else (0, 0)
        )


async def test_failure_rate_applies_to_a_share_of_operations(
    make_client: ClientFactory, deposit_body: MakeDepositBody, monkeypatch: pytest.MonkeyPatch
) -> None:
    draws = iter([0.9, 0.1, 0.9])
    monkeypatch.setattr("bank_simulator.app.random.random", lambda: next(draws))
    async with make_client(failure_rate=0.5) as client:
        client.ledger.record("d", SUCCESS, 100, "USD")
        codes = [(await operate(client, "refund", f"r{i}", "d", 10)).status_code for i in range(2)]
        assert codes == [201, 503]
        assert (await operate(client, "refund", "r1", "d", 10)).status_code == 201


@pytest.mark.parametrize("kind", ["capture", "void", "refund"])
async def test_latency_is_added_after_the_operation_is_recorded(
    make_client: ClientFactory, deposit_body: MakeDepositBody, kind: str
) -> None:
    async with make_client(latency_ms=300) as client:
        await deposit(client, deposit_body, "d", amount=100, capture=kind == "refund")
        loop = asyncio.get_running_loop()
        started = loop.time()
        pending = asyncio.create_task(operate(client, kind, "slow", "d", 10))
        await asyncio.sleep(0.1)

        assert not pending.done()
        inquiry = await client.get(f"/api/v1/{COLLECTION[kind]}/slow")  # not delayed
        assert inquiry.status_code == 200
        # Already applied while the caller still waits.
        state = await deposit_state(client, "d")
        assert (state["status"], state["captured_amount"], state["refunded_amount"]) == {
            "capture": ("succeeded", 10, 0),
            "void": ("voided", 0, 0),
            "refund": ("succeeded", 100, 10),
        }[kind]

        response = await pending
        assert response.status_code == 201
        assert loop.time() - started >= 0.3
        assert response.json() == inquiry.json()


async def test_operations_count_toward_the_memory_bound(
    make_client: ClientFactory, deposit_body: MakeDepositBody
) -> None:
    async with make_client(max_transactions=3) as client:
        await deposit(client, deposit_body, "d", amount=100)
        for i in range(3):
            assert (await operate(client, "refund", f"r{i}", "d", 10)).status_code == 201
        assert len(client.ledger) == 3
        # The deposit, oldest, was dropped: later operations on it find nothing.
        assert (await client.get("/api/v1/deposits/d")).status_code == 404
        assert_problem(await operate(client, "refund", "r9", "d", 10), 404, "deposit_reference")
        # And a new deposit drops the oldest operation.
        await deposit(client, deposit_body, "e", amount=100)
        assert (await client.get("/api/v1/refunds/r0")).status_code == 404
        assert (await client.get("/api/v1/refunds/r1")).status_code == 200
        assert len(client.ledger) == 3


async def test_operations_are_logged_without_card_data(
    client: BankClient, deposit_body: MakeDepositBody, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    await client.post("/api/v1/deposit", json=deposit_body("log", REFUND_DECLINED, cvv="8731"))
    await operate(client, "refund", "rma-log", "log", 10)
    assert "rma-log" in caplog.text
    assert "refund" in caplog.text
    assert REFUND_DECLINED not in caplog.text
    assert "8731" not in caplog.text
