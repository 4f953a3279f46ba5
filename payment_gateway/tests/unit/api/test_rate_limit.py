"""The rate limiter's logic on the in-process memory storage (docs/design.md, Security)."""

from __future__ import annotations

import asyncio
import logging

import pytest
from limits.aio.storage import MemoryStorage
from payment_gateway.api import rate_limit
from payment_gateway.api.rate_limit import (
    RateLimited,
    RateLimiter,
    RatePolicy,
    create_rate_limiter,
)
from payment_gateway.config import Settings
from payment_gateway.service.errors import Unauthorized
from payment_gateway.service.merchants import MerchantService
from prometheus_client import REGISTRY
from pydantic import ValidationError
from redis.exceptions import ConnectionError as RedisConnectionError


def limiter(quota: int = 3, window_seconds: int = 1, address_quota: int = 2) -> RateLimiter:
    return RateLimiter(
        MemoryStorage(),
        RatePolicy("per-key", "key", quota, window_seconds),
        RatePolicy("per-address", "address", address_quota, window_seconds),
    )


def metric(name: str, scope: str) -> float:
    return REGISTRY.get_sample_value(name, {"scope": scope}) or 0.0


async def test_a_burst_passes_then_the_next_request_is_refused_with_the_headers() -> None:
    limits = limiter(quota=3, window_seconds=2)
    refused_before = metric("gateway_rate_limited_requests_total", "key")
    for _ in range(3):
        await limits.check(limits.per_key, "key-a")
    with pytest.raises(RateLimited) as refused:
        await limits.check(limits.per_key, "key-a")
    assert refused.value.status_code == 429
    headers = refused.value.headers
    assert headers is not None
    retry_after = int(headers["Retry-After"])
    assert 1 <= retry_after <= 2
    assert headers["RateLimit-Policy"] == '"per-key";q=3;w=2'
    assert headers["RateLimit"] == f'"per-key";r=0;t={retry_after}'
    assert "3 requests in 2 s" in refused.value.detail
    assert metric("gateway_rate_limited_requests_total", "key") == refused_before + 1


async def test_the_quota_comes_back_once_the_window_has_passed() -> None:
    limits = limiter(quota=2, window_seconds=1)
    for _ in range(2):
        await limits.check(limits.per_key, "key-a")
    with pytest.raises(RateLimited):
        await limits.check(limits.per_key, "key-a")
    await asyncio.sleep(1.05)
    for _ in range(2):
        await limits.check(limits.per_key, "key-a")
    with pytest.raises(RateLimited):
        await limits.check(limits.per_key, "key-a")


async def test_a_flooding_key_does_not_limit_another_key() -> None:
    limits = limiter(quota=5)
    refused = 0
    for _ in range(50):
        try:
            await limits.check(limits.per_key, "flooding-key")
        except RateLimited:
            refused += 1
    assert refused == 45
    for _ in range(5):
        await limits.check(limits.per_key, "quiet-key")


async def test_requests_without_a_valid_key_count_against_their_address(
    merchant_service: MerchantService,
) -> None:
    created = await merchant_service.create("acme")
    limits = limiter(quota=3, address_quota=2)
    for _ in range(2):
        with pytest.raises(Unauthorized):
            await limits.authenticate(merchant_service, "wrong-key", "203.0.113.7")
    with pytest.raises(RateLimited) as refused:
        await limits.authenticate(merchant_service, None, "203.0.113.7")
    assert refused.value.headers is not None
    assert refused.value.headers["RateLimit-Policy"] == '"per-address";q=2;w=1'
    # Another address still gets its 401; a valid key from the refused address is served.
    with pytest.raises(Unauthorized):
        await limits.authenticate(merchant_service, "wrong-key", "203.0.113.8")
    merchant = await limits.authenticate(merchant_service, created.api_key, "203.0.113.7")
    assert merchant == created.merchant


async def test_each_api_key_has_its_own_budget(merchant_service: MerchantService) -> None:
    first = await merchant_service.create("acme")
    second = await merchant_service.create("globex")
    limits = limiter(quota=2)
    for _ in range(2):
        await limits.authenticate(merchant_service, first.api_key, "203.0.113.7")
    with pytest.raises(RateLimited) as refused:
        await limits.authenticate(merchant_service, first.api_key, "203.0.113.7")
    assert refused.value.headers is not None
    assert refused.value.headers["RateLimit"].startswith('"per-key";r=0;')
    assert await limits.authenticate(merchant_service, second.api_key, "203.0.113.7") == (
        second.merchant
    )


class BrokenStorage(MemoryStorage):
    """A memory storage that fails like an unreachable Redis while ``broken`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.broken = True
        self.calls = 0

    async def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        self.calls += 1
        if self.broken:
            raise RedisConnectionError("Connection refused")
        return await super().acquire_entry(key, limit, expiry, amount)


async def test_a_failing_storage_lets_requests_through_and_says_so(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rate_limit, "STORAGE_RETRY_SECONDS", 0.3)
    storage = BrokenStorage()
    limits = RateLimiter(
        storage,
        RatePolicy("per-key", "key", 1, 1),
        RatePolicy("per-address", "address", 1, 1),
        storage_errors=(RedisConnectionError,),
    )
    unchecked_before = metric("gateway_rate_limit_storage_errors_total", "key")
    with caplog.at_level(logging.WARNING, logger=rate_limit.__name__):
        for _ in range(5):
            await limits.check(limits.per_key, "key-a")  # over the quota of 1, yet allowed
        assert metric("gateway_rate_limit_storage_errors_total", "key") == unchecked_before + 5
        # One storage call and one warning for the outage, not one per request.
        assert storage.calls == 1
        # Once the storage answers again (it is asked again after the pause), limits apply.
        storage.broken = False
        await asyncio.sleep(0.35)
        await limits.check(limits.per_key, "key-a")
        with pytest.raises(RateLimited):
            await limits.check(limits.per_key, "key-a")
    assert [r.getMessage() for r in caplog.records] == [
        "rate-limit storage failed, requests pass unchecked: ConnectionError: Connection refused",
        "rate-limit storage answers again: rate limits apply",
    ]


def settings(**values: object) -> Settings:
    return Settings(**values)  # type: ignore[arg-type]


def test_the_defaults_give_each_key_100_per_second_with_a_burst_of_200() -> None:
    limits = create_rate_limiter(settings())
    assert limits is not None
    assert limits.per_key.header == '"per-key";q=200;w=2'
    assert limits.per_address.header == '"per-address";q=20;w=2'


def test_the_burst_sets_the_window() -> None:
    limits = create_rate_limiter(
        settings(
            rate_limit_per_second=50,
            rate_limit_burst=250,
            rate_limit_unauthenticated_per_second=4,
        )
    )
    assert limits is not None
    assert (limits.per_key.quota, limits.per_key.window_seconds) == (250, 5)
    assert (limits.per_address.quota, limits.per_address.window_seconds) == (20, 5)


def test_rate_limits_can_be_turned_off() -> None:
    assert create_rate_limiter(settings(rate_limit_enabled=False)) is None


@pytest.mark.parametrize("burst", [150, 50])
def test_a_burst_that_is_not_a_whole_multiple_of_the_rate_is_refused(burst: int) -> None:
    with pytest.raises(ValidationError, match="RATE_LIMIT_BURST"):
        settings(rate_limit_per_second=100, rate_limit_burst=burst)


def test_a_redis_url_must_be_a_redis_url() -> None:
    with pytest.raises(ValidationError, match="REDIS_URL"):
        settings(redis_url="http://cache:6379")
    assert settings(redis_url="rediss://:secret@cache:6380/1").redis_url.get_secret_value()
