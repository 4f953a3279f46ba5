"""Rate limits: per API key, and per client address for requests without a valid key.

The `limits` library counts, with its moving window: at most `quota` requests in any
`window_seconds`, so a key may spend its whole window's budget at once (the burst) and then
gets its rate back as its oldest requests leave the window. With REDIS_URL the counters live in
Redis and every replica shares one budget (one Lua call, one round trip per admitted request);
without it each process counts alone, in memory. A refused key is recorded in RefusedKeys until
its window frees a slot: until then its requests are answered before routing, without asking
the storage (api/refused_keys.py), so a refusal costs two round trips once per window and
process (the refused hit, then the window's reset for Retry-After) and none afterwards.

A storage outage must not take payments down: a failing Redis lets requests through
unchecked (fail open), with a warning in the log and a count in
`gateway_rate_limit_storage_errors_total`.

Refusals are 429 problem+json with `Retry-After` and the header fields of
draft-ietf-httpapi-ratelimit-headers-11 ("RateLimit header fields for HTTP", sections 3 and 4):
    RateLimit-Policy: "per-key";q=200;w=2
    RateLimit: "per-key";r=0;t=1
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable

from limits import RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from redis.asyncio import BlockingConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException
from starlette.requests import Request

from payment_gateway.api.refused_keys import RefusedKeys
from payment_gateway.config import Settings
from payment_gateway.domain.merchant import Merchant
from payment_gateway.metrics import RATE_LIMIT_STORAGE_ERRORS, RATE_LIMITED
from payment_gateway.service.errors import Unauthorized
from payment_gateway.service.merchants import MerchantService, hash_api_key

log = logging.getLogger(__name__)

# After a storage error requests pass unchecked this long before Redis is tried again, so an
# outage costs neither a timeout nor a log line per request.
STORAGE_RETRY_SECONDS = 1.0
# Requests wait (up to REDIS_TIMEOUT_SECONDS) for one of these rather than failing open.
REDIS_MAX_CONNECTIONS = 100


class RatePolicy:
    """One quota: ``quota`` requests in any ``window_seconds``, counted per identifier."""

    def __init__(self, name: str, scope: str, quota: int, window_seconds: int) -> None:
        self.name = name  # the policy's name in the RateLimit header fields
        self.scope = scope  # the `scope` label of the metrics
        self.quota = quota
        self.window_seconds = window_seconds
        self.item = RateLimitItemPerSecond(quota, window_seconds)
        self.header = f'"{name}";q={quota};w={window_seconds}'

    def refusal_detail(self, retry_after: int) -> str:
        return (
            f"over the {self.name} rate limit of {self.quota} requests in "
            f"{self.window_seconds} s: retry after {retry_after} s"
        )

    def refusal_headers(self, remaining: int, retry_after: int) -> dict[str, str]:
        return {
            "Retry-After": str(retry_after),
            "RateLimit-Policy": self.header,
            "RateLimit": f'"{self.name}";r={remaining};t={retry_after}',
        }


class RateLimited(HTTPException):
    """429; api/problems.py renders it as problem+json with these headers."""

    def __init__(self, policy: RatePolicy, remaining: int, retry_after: int) -> None:
        super().__init__(
            429,
            policy.refusal_detail(retry_after),
            headers=policy.refusal_headers(remaining, retry_after),
        )


class RateLimiter:
    def __init__(
        self,
        storage: Storage,
        per_key: RatePolicy,
        per_address: RatePolicy,
        *,
        storage_errors: tuple[type[Exception], ...] = (),
        close: Callable[[], Awaitable[None]] | None = None,
        refused: RefusedKeys | None = None,
        pace: bool = False,
    ) -> None:
        self.per_key = per_key
        self.pace = pace
        self.per_address = per_address
        self._strategy = MovingWindowRateLimiter(storage)
        self._storage_errors = storage_errors
        self._close = close
        self.refused = refused if refused is not None else RefusedKeys()
        self._unchecked_until = 0.0  # monotonic time until which the storage is not asked

    async def authenticate(
        self, merchants: MerchantService, api_key: str | None, client_address: str
    ) -> Merchant:
        """The key's merchant, within the key's limit; a refused key counts against the address."""
        try:
            merchant = await merchants.authenticate(api_key)
        except Unauthorized:
            await self.check(self.per_address, client_address)
            raise
        assert api_key is not None  # authenticate() refuses a missing key
        await self.check(self.per_key, hash_api_key(api_key))
        return merchant

    async def check(self, policy: RatePolicy, identifier: str) -> None:
        """Count one request; raise RateLimited when it is over the policy's quota."""
        if policy is self.per_key:
            # Recorded as refused (or paced) since the middleware let this request pass:
            # refused here too, without asking the storage (api/refused_keys.py).
            refusal = self.refused.refusal(identifier)
            if refusal is not None:
                RATE_LIMITED.labels(policy.scope).inc()
                raise RateLimited(policy, 0, max(1, math.ceil(refusal.until - time.monotonic())))
        if not await self._hit(policy, identifier):
            RATE_LIMITED.labels(policy.scope).inc()
            window = await self._window(policy, identifier)
            if window is None:  # the storage failed: the longest wait, and nothing recorded
                raise RateLimited(policy, 0, policy.window_seconds)
            remaining, wait = window
            if policy is self.per_key and remaining == 0 and wait > 0:
                self.refused.refuse(identifier, policy, wait)
            # The moving window's reset is when its oldest request leaves it: one slot frees.
            raise RateLimited(policy, max(remaining, 0), max(1, math.ceil(wait)))
        if policy is self.per_key and self.pace:
            self.refused.pace(identifier, policy)

    async def aclose(self) -> None:
        if self._close is not None:
            await self._close()

    async def _hit(self, policy: RatePolicy, identifier: str) -> bool:
        if self._unchecked_until and time.monotonic() < self._unchecked_until:
            RATE_LIMIT_STORAGE_ERRORS.labels(policy.scope).inc()
            return True
        try:
            allowed = await self._strategy.hit(policy.item, policy.name, identifier)
        except self._storage_errors as exc:
            if not self._unchecked_until:
                log.warning(
                    "rate-limit storage failed, requests pass unchecked: %s: %s",
                    type(exc).__name__,
                    exc,
                )
            self._unchecked_until = time.monotonic() + STORAGE_RETRY_SECONDS
            RATE_LIMIT_STORAGE_ERRORS.labels(policy.scope).inc()
            return True
        if self._unchecked_until:
            self._unchecked_until = 0.0
            log.warning("rate-limit storage answers again: rate limits apply")
        return allowed

    async def _window(self, policy: RatePolicy, identifier: str) -> tuple[int, float] | None:
        """Requests left in the window and seconds until its oldest request leaves it; None
        when the storage fails."""
        try:
            stats = await self._strategy.get_window_stats(policy.item, policy.name, identifier)
        except self._storage_errors:
            return None
        return stats.remaining, stats.reset_time - time.time()


def client_address(request: Request) -> str:
    # uvicorn takes the client from X-Forwarded-For only for proxies FORWARDED_ALLOW_IPS trusts.
    return request.client.host if request.client else "unknown"


def create_rate_limiter(
    settings: Settings, refused: RefusedKeys | None = None
) -> RateLimiter | None:
    """The limiter the settings describe, or None when RATE_LIMIT_ENABLED=false; the keys it
    refuses are recorded in ``refused`` (RefusedKeyMiddleware answers them)."""
    if not settings.rate_limit_enabled:
        return None
    window = settings.rate_limit_window_seconds
    per_key = RatePolicy("per-key", "key", settings.effective_rate_limit_burst, window)
    per_address = RatePolicy(
        "per-address", "address", settings.rate_limit_unauthenticated_per_second * window, window
    )
    redis_url = settings.redis_url.get_secret_value()
    if not redis_url:
        memory = MemoryStorage()
        return RateLimiter(
            memory,
            per_key,
            per_address,
            close=lambda: _close_memory(memory),
            refused=refused,
            pace=settings.rate_limit_pace,
        )
    timeout = settings.redis_timeout_seconds
    pool = BlockingConnectionPool.from_url(
        redis_url,
        max_connections=REDIS_MAX_CONNECTIONS,
        timeout=timeout,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        # One quick retry replaces a pooled connection that Redis closed; redis-py's default
        # (ten, with backoff) would hold every request for seconds during an outage.
        retry=Retry(NoBackoff(), 1),
    )
    storage = RedisStorage(
        f"async+{redis_url}",
        implementation="redispy",
        key_prefix=settings.rate_limit_key_prefix,
        connection_pool=pool,  # type: ignore[arg-type]
    )
    return RateLimiter(
        storage,
        per_key,
        per_address,
        storage_errors=(RedisError,),
        close=pool.aclose,
        refused=refused,
        pace=settings.rate_limit_pace,
    )


async def _close_memory(storage: MemoryStorage) -> None:
    # The storage sweeps expired entries in a background task: end it with the app.
    if storage.timer is not None:
        storage.timer.cancel()
