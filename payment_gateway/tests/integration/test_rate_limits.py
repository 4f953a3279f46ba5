"""Rate limits over the real app: in process memory and in the real Redis (shared by replicas)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis
from asgi_lifespan import LifespanManager
from fakes import FakeBank, GatedBank
from limits.aio.storage import RedisStorage
from payment_gateway.main import create_app
from prometheus_client import REGISTRY

from .conftest import MERCHANT_ONE, MERCHANT_TWO, gateway_settings, payment_body

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
IN_CI = os.environ.get("CI", "").lower() == "true"

# A key may send 3 requests in any 1 s window; an address without a valid key 2. Refusals are
# answered at once unless a test turns the hold (the tarpit) on.
LIMITS: dict[str, object] = {
    "rate_limit_per_second": 3,
    "rate_limit_burst": 3,
    "rate_limit_unauthenticated_per_second": 2,
    "rate_limit_hold_seconds": 0,
}
UNKNOWN_PAYMENT = "/api/v1/payments/no-such-payment"


@pytest.fixture(scope="session")
def redis_server() -> str:
    """The Redis at TEST_REDIS_URL; skipped when unreachable, but a failure under CI=true."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        message = f"Redis unreachable at {REDIS_URL}: {exc}"
        if IN_CI:
            pytest.fail(message)  # CI must run these tests, never skip them
        pytest.skip(message)
    finally:
        client.close()
    return REDIS_URL


@pytest.fixture
def redis_prefix(redis_server: str) -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    prefix = f"pgw-test-{uuid.uuid4().hex[:12]}"
    yield prefix
    client = redis.Redis.from_url(redis_server)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def redis_keys(prefix: str) -> list[bytes]:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        return list(client.scan_iter(match=f"{prefix}:*"))
    finally:
        client.close()


@pytest.fixture(params=["memory", "redis"])
def storage(request: pytest.FixtureRequest) -> dict[str, str]:
    """The settings of each storage: this process's memory, or the real Redis."""
    if request.param == "memory":
        return {}
    prefix: str = request.getfixturevalue("redis_prefix")
    return {"redis_url": REDIS_URL, "rate_limit_key_prefix": prefix}


@contextlib.asynccontextmanager
async def running_gateway(
    tmp_path: Path,
    bank: FakeBank | None = None,
    /,
    *,
    client_host: str = "127.0.0.1",
    **overrides: object,
) -> AsyncIterator[tuple[httpx.AsyncClient, FakeBank]]:
    """The real app on its own SQLite database, its client seen as coming from client_host."""
    directory = tmp_path / uuid.uuid4().hex[:8]
    directory.mkdir()
    settings = gateway_settings(
        f"sqlite+aiosqlite:///{directory}/gateway.db", directory, **(LIMITS | overrides)
    )
    bank = bank if bank is not None else FakeBank()
    app = create_app(settings, bank=bank, run_reconciler=False)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app, client=(client_host, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            yield client, bank


def metric(name: str, scope: str) -> float:
    return REGISTRY.get_sample_value(name, {"scope": scope}) or 0.0


def assert_rate_limited(response: httpx.Response, policy: str, quota: int) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 429
    assert problem["title"] == "Too Many Requests"
    retry_after = int(response.headers["retry-after"])
    assert retry_after == 1  # the window is 1 s: the oldest request leaves it within 1 s
    assert response.headers["ratelimit-policy"] == f'"{policy}";q={quota};w=1'
    assert response.headers["ratelimit"] == f'"{policy}";r=0;t={retry_after}'


async def test_a_key_over_its_burst_gets_429_and_the_bank_is_not_called(
    tmp_path: Path, storage: dict[str, str]
) -> None:
    async with running_gateway(tmp_path, **storage) as (client, bank):
        refused_before = metric("gateway_rate_limited_requests_total", "key")
        answers = [
            await client.post("/api/v1/payments", json=payment_body(), headers=MERCHANT_ONE)
            for _ in range(5)
        ]
        assert [r.status_code for r in answers] == [201, 201, 201, 429, 429]
        assert_rate_limited(answers[3], "per-key", 3)
        assert len(bank.deposits) == 3
        # GET goes through the same budget (the dependency path), already spent.
        assert_rate_limited(await client.get(UNKNOWN_PAYMENT, headers=MERCHANT_ONE), "per-key", 3)
        assert metric("gateway_rate_limited_requests_total", "key") == refused_before + 3


async def test_a_flooding_merchant_does_not_limit_the_other(
    tmp_path: Path, storage: dict[str, str]
) -> None:
    async with running_gateway(tmp_path, **storage) as (client, _bank):
        flood = [(await client.get(UNKNOWN_PAYMENT, headers=MERCHANT_ONE)) for _ in range(20)]
        assert [r.status_code for r in flood].count(429) == 17
        others = [(await client.get(UNKNOWN_PAYMENT, headers=MERCHANT_TWO)) for _ in range(3)]
        assert [r.status_code for r in others] == [404, 404, 404]


async def test_the_budget_comes_back_after_the_window(
    tmp_path: Path, storage: dict[str, str]
) -> None:
    async with running_gateway(tmp_path, **storage) as (client, _bank):
        first = [(await client.get(UNKNOWN_PAYMENT, headers=MERCHANT_ONE)) for _ in range(4)]
        assert [r.status_code for r in first] == [404, 404, 404, 429]
        await asyncio.sleep(int(first[3].headers["retry-after"]) + 0.05)
        again = [(await client.get(UNKNOWN_PAYMENT, headers=MERCHANT_ONE)) for _ in range(4)]
        assert [r.status_code for r in again] == [404, 404, 404, 429]


async def test_requests_without_a_valid_key_are_limited_per_client_address(
    tmp_path: Path, storage: dict[str, str]
) -> None:
    async with running_gateway(tmp_path, client_host="198.51.100.7", **storage) as (client, _):
        refused_before = metric("gateway_rate_limited_requests_total", "address")
        answers = [
            await client.get(UNKNOWN_PAYMENT),
            await client.post("/api/v1/payments", json=payment_body()),
            await client.get(UNKNOWN_PAYMENT, headers={"Authorization": "Bearer wrong-key"}),
        ]
        assert [r.status_code for r in answers] == [401, 401, 429]
        assert_rate_limited(answers[2], "per-address", 2)
        assert metric("gateway_rate_limited_requests_total", "address") == refused_before + 1
        # A valid key from the same address is limited by its own budget, not the address's.
        assert (await client.get(UNKNOWN_PAYMENT, headers=MERCHANT_ONE)).status_code == 404
        # Health, readiness and the docs are never limited.
        for path in ["/healthz", "/readyz", "/docs", "/openapi.json"] * 5:
            assert (await client.get(path)).status_code == 200, path
    # Another address has a budget of its own.
    async with running_gateway(tmp_path, client_host="198.51.100.8", **storage) as (client, _):
        assert (await client.get(UNKNOWN_PAYMENT)).status_code == 401


async def test_replicas_sharing_one_redis_share_one_budget(
    tmp_path: Path, redis_prefix: str
) -> None:
    shared = {"redis_url": REDIS_URL, "rate_limit_key_prefix": redis_prefix}
    async with (
        running_gateway(tmp_path, **shared) as (first, _),
        running_gateway(tmp_path, **shared) as (second, _),
    ):
        statuses = [
            (await replica.get(UNKNOWN_PAYMENT, headers=MERCHANT_ONE)).status_code
            for replica in (first, second, first, second, first, second)
        ]
        assert statuses == [404, 404, 404, 429, 429, 429]
    assert redis_keys(redis_prefix), "the counters live in Redis, under the configured prefix"


async def test_without_redis_each_process_counts_alone(tmp_path: Path) -> None:
    async with (
        running_gateway(tmp_path) as (first, _),
        running_gateway(tmp_path) as (second, _),
    ):
        statuses = [
            (await replica.get(UNKNOWN_PAYMENT, headers=MERCHANT_ONE)).status_code
            for replica in (first, second) * 4
        ]
        assert statuses == [404] * 6 + [429, 429]


async def test_a_redis_outage_lets_payments_through(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]  # nothing listens there once the socket closes
    unchecked_before = metric("gateway_rate_limit_storage_errors_total", "key")
    async with running_gateway(tmp_path, redis_url=f"redis://127.0.0.1:{closed_port}/0") as (
        client,
        bank,
    ):
        root = logging.getLogger()
        root.addHandler(caplog.handler)  # create_app replaced the root logger's handlers
        try:
            answers = [
                await client.post("/api/v1/payments", json=payment_body(), headers=MERCHANT_ONE)
                for _ in range(6)
            ]
        finally:
            root.removeHandler(caplog.handler)
    assert [r.status_code for r in answers] == [201] * 6  # twice the quota, none refused
    assert len(bank.deposits) == 6
    assert metric("gateway_rate_limit_storage_errors_total", "key") == unchecked_before + 6
    warnings = [r.getMessage() for r in caplog.records if "pass unchecked" in r.getMessage()]
    assert len(warnings) == 1, warnings


async def test_rate_limits_turned_off_refuse_nothing(tmp_path: Path) -> None:
    async with running_gateway(tmp_path, rate_limit_enabled=False) as (client, _bank):
        statuses = {
            (await client.get(UNKNOWN_PAYMENT, headers=MERCHANT_ONE)).status_code for _ in range(10)
        }
        assert statuses == {404}


# Keys known to be over their limit: answered before routing (api/refused_keys.py).


async def test_a_known_refused_key_is_answered_before_its_body_is_read(
    tmp_path: Path, storage: dict[str, str]
) -> None:
    async with running_gateway(tmp_path, **storage) as (client, bank):
        for _ in range(3):
            post = await client.post("/api/v1/payments", json=payment_body(), headers=MERCHANT_ONE)
            assert post.status_code == 201
        first = await client.post("/api/v1/payments", json=payment_body(), headers=MERCHANT_ONE)
        assert_rate_limited(first, "per-key", 3)  # the limiter's own refusal
        # Once the key is known refused, even a body that is not JSON gets the 429: the
        # request never reaches the body read, let alone the database or the bank.
        again = await client.post(
            "/api/v1/payments",
            content=b"{not json",
            headers={**MERCHANT_ONE, "Content-Type": "application/json"},
        )
        assert_rate_limited(again, "per-key", 3)
        assert again.json()["detail"] == first.json()["detail"]
        assert again.headers["cache-control"] == "no-store"  # every answer's headers
        assert again.headers["x-request-id"]
        assert len(bank.deposits) == 3
        # The other merchant is served meanwhile.
        other = await client.post("/api/v1/payments", json=payment_body(), headers=MERCHANT_TWO)
        assert other.status_code == 201
        assert len(bank.deposits) == 4
        # Health, readiness and the docs answer whatever key comes along (a probe's header).
        for path in ("/healthz", "/readyz", "/docs", "/openapi.json"):
            assert (await client.get(path, headers=MERCHANT_ONE)).status_code == 200, path


async def test_a_key_refused_lately_has_at_most_its_cap_in_progress_and_others_none(
    tmp_path: Path, storage: dict[str, str]
) -> None:
    bank = GatedBank()
    async with running_gateway(
        tmp_path,
        bank,
        rate_limit_per_second=10,
        rate_limit_burst=20,  # a 2 s window: the cap lasts one more window after it frees
        rate_limit_max_in_flight=2,
        **storage,
    ) as (client, _bank):
        statuses = [
            (await client.get(UNKNOWN_PAYMENT, headers=MERCHANT_ONE)).status_code for _ in range(21)
        ]
        assert statuses == [404] * 20 + [429]  # over its limit once: refused lately
        await asyncio.sleep(2.1)  # its window has given its slots back

        def pay(key: dict[str, str]) -> asyncio.Task[httpx.Response]:
            return asyncio.create_task(
                client.post("/api/v1/payments", json=payment_body(), headers=key)
            )

        flooder, other = (
            [pay(MERCHANT_ONE) for _ in range(6)],
            [pay(MERCHANT_TWO) for _ in range(6)],
        )
        await asyncio.sleep(0.3)
        # Two of the first key's payments wait at the bank, the other four were refused; the
        # second key, never refused, has all six at the bank.
        assert bank.waiting == 2 + 6
        refused = [task.result() for task in flooder if task.done()]
        assert len(refused) == 4
        for answer in refused:
            assert answer.status_code == 429
            assert answer.headers["retry-after"] == "1"
            assert "in progress at once" in answer.json()["detail"]
        bank.gate.set()
        paid = await asyncio.gather(*flooder, *other)
        assert [r.status_code for r in paid].count(201) == 2 + 6


async def test_a_held_flood_leaves_the_other_merchant_served_at_once(tmp_path: Path) -> None:
    async with running_gateway(tmp_path, rate_limit_hold_seconds=1.0) as (client, _bank):
        statuses = [
            (await client.get(UNKNOWN_PAYMENT, headers=MERCHANT_ONE)).status_code for _ in range(4)
        ]
        assert statuses == [404, 404, 404, 429]  # the 4th is refused at once, and recorded
        held_before = REGISTRY.get_sample_value("gateway_rate_limit_held_total") or 0
        started = asyncio.get_running_loop().time()
        flood = [
            asyncio.create_task(client.get(UNKNOWN_PAYMENT, headers=MERCHANT_ONE))
            for _ in range(10)
        ]
        await asyncio.sleep(0.1)
        other = await client.get(UNKNOWN_PAYMENT, headers=MERCHANT_TWO)
        assert other.status_code == 404
        assert asyncio.get_running_loop().time() - started < 0.5
        assert not any(task.done() for task in flood)  # the flood is still held
        answers = await asyncio.gather(*flood)
        assert asyncio.get_running_loop().time() - started >= 1.0
        for answer in answers:
            assert answer.status_code == 429
            assert answer.headers["ratelimit-policy"] == '"per-key";q=3;w=1'
            assert int(answer.headers["retry-after"]) >= 1
        assert REGISTRY.get_sample_value("gateway_rate_limit_held_total") == held_before + 10


async def test_refusals_beyond_the_cap_on_held_ones_are_answered_at_once(
    tmp_path: Path,
) -> None:
    async with running_gateway(tmp_path, rate_limit_hold_seconds=2.0, rate_limit_max_held=3) as (
        client,
        _bank,
    ):
        for _ in range(4):
            await client.get(UNKNOWN_PAYMENT, headers=MERCHANT_ONE)
        loop = asyncio.get_running_loop()
        started = loop.time()
        answered_at: list[float] = []

        async def flood() -> httpx.Response:
            response = await client.get(UNKNOWN_PAYMENT, headers=MERCHANT_ONE)
            answered_at.append(loop.time() - started)
            return response

        answers = await asyncio.gather(*(flood() for _ in range(5)))
        assert [r.status_code for r in answers] == [429] * 5
        answered_at.sort()
        assert answered_at[1] < 0.5  # two beyond the cap of three: at once
        assert answered_at[2] >= 2.0  # three held for the whole hold


async def test_with_redis_a_known_refused_key_costs_no_redis_call(
    tmp_path: Path, redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []

    def counted(name: str) -> Callable[..., Awaitable[object]]:
        method = getattr(RedisStorage, name)

        async def wrapper(self: RedisStorage, *args: object, **kwargs: object) -> object:
            calls.append(name)
            return await method(self, *args, **kwargs)

        return wrapper

    for name in ("acquire_entry", "get_moving_window"):
        monkeypatch.setattr(RedisStorage, name, counted(name))
    async with running_gateway(
        tmp_path, redis_url=REDIS_URL, rate_limit_key_prefix=redis_prefix
    ) as (client, _bank):
        for _ in range(3):
            assert (await client.get(UNKNOWN_PAYMENT, headers=MERCHANT_ONE)).status_code == 404
        assert calls == ["acquire_entry"] * 3  # one round trip per admitted request
        assert_rate_limited(await client.get(UNKNOWN_PAYMENT, headers=MERCHANT_ONE), "per-key", 3)
        assert calls[3:] == ["acquire_entry", "get_moving_window"]  # refused, then its reset
        for _ in range(10):
            assert_rate_limited(
                await client.get(UNKNOWN_PAYMENT, headers=MERCHANT_ONE), "per-key", 3
            )
        assert len(calls) == 5  # none while the key is known refused
        assert (await client.get(UNKNOWN_PAYMENT, headers=MERCHANT_TWO)).status_code == 404
        assert calls[5:] == ["acquire_entry"]
