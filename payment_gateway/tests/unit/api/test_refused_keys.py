"""Keys known to be over their limit: the per-process table, and the middleware that answers
them before the app, after a bounded hold (docs/design.md, Security)."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest
from limits.aio.storage import MemoryStorage
from payment_gateway.api import refused_keys
from payment_gateway.api.rate_limit import RateLimited, RateLimiter, RatePolicy
from payment_gateway.api.refused_keys import RefusedKeyMiddleware, RefusedKeys
from payment_gateway.service.merchants import hash_api_key
from prometheus_client import REGISTRY
from starlette.types import Message, Receive, Scope, Send

PER_KEY = RatePolicy("per-key", "key", 3, 2)
FLOODER_KEY = "pgw_flooder"
OTHER_KEY = "pgw_other"


class Clock:
    """time.monotonic() as the module sees it, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr("payment_gateway.api.refused_keys.time.monotonic", clock)
    return clock


def test_a_refused_key_stays_refused_until_its_window_frees_a_slot(clock: Clock) -> None:
    refused = RefusedKeys()
    refused.refuse("hash-a", PER_KEY, 1.5)
    clock.now += 1.4
    refusal = refused.refusal("hash-a")
    assert refusal is not None
    assert refusal.policy is PER_KEY
    assert refusal.until == pytest.approx(clock.now + 0.1)
    assert refused.refusal("hash-b") is None
    clock.now += 0.1
    assert refused.refusal("hash-a") is None
    assert len(refused) == 1  # kept one more window, to pace the key (see the pacing tests)
    clock.now += PER_KEY.window_seconds
    assert refused.refusal("hash-a") is None
    assert len(refused) == 0  # the expired entry is gone once looked up


def test_the_table_empties_once_its_last_key_is_no_longer_refused_lately(clock: Clock) -> None:
    """A key refused once that never comes back must not leave the table non-empty for good:
    the middleware's hot path is the table's truth test."""
    refused = RefusedKeys()
    assert not refused
    refused.refuse("hash-a", PER_KEY, 0.5)
    clock.now += 1.0
    refused.refuse("hash-b", PER_KEY, 0.5)
    assert refused
    clock.now += 0.5 + PER_KEY.window_seconds  # past hash-b's, the later of the two
    assert not refused
    assert len(refused) == 0


def test_past_its_size_the_table_drops_the_keys_no_longer_refused_nor_paced(
    clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(refused_keys, "PURGE_ABOVE", 3)
    refused = RefusedKeys()
    refused.refuse("expired-1", PER_KEY, 1)
    refused.refuse("expired-2", PER_KEY, 1)
    refused.refuse("live", PER_KEY, 5)
    clock.now += 1 + PER_KEY.window_seconds  # the first two refused and paced no more
    refused.refuse("new", PER_KEY, 1)
    assert len(refused) == 2
    assert refused.refusal("live") is not None
    assert refused.refusal("new") is not None


async def test_the_limiter_records_a_refused_key_until_its_window_resets() -> None:
    refused = RefusedKeys()
    limits = RateLimiter(
        MemoryStorage(), PER_KEY, RatePolicy("per-address", "address", 1, 2), refused=refused
    )
    for _ in range(3):
        await limits.check(limits.per_key, "hash-a")
    assert refused.refusal("hash-a") is None  # admitted requests record nothing
    with pytest.raises(RateLimited):
        await limits.check(limits.per_key, "hash-a")
    refusal = refused.refusal("hash-a")
    assert refusal is not None
    assert 1.5 < refusal.until - time.monotonic() <= 2  # the oldest of the 3 leaves within 2 s
    # An address over its limit is not recorded: a valid key from it must still be served.
    await limits.check(limits.per_address, "203.0.113.7")
    with pytest.raises(RateLimited):
        await limits.check(limits.per_address, "203.0.113.7")
    assert len(refused) == 1


class Downstream:
    """The app behind the middleware: records the requests that reach it."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.calls += 1
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


async def never_read(_: None = None) -> Message:
    raise AssertionError("a refusal answered by the middleware must not read the body")


def http_scope(api_key: str | None) -> Scope:
    headers = [(b"content-type", b"application/json")]
    if api_key is not None:
        headers.append((b"authorization", f"Bearer {api_key}".encode()))
    return {"type": "http", "method": "POST", "path": "/api/v1/payments", "headers": headers}


async def call(middleware: RefusedKeyMiddleware, api_key: str | None) -> list[Message]:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await middleware(http_scope(api_key), never_read, send)
    return sent


def refused_middleware(hold_seconds: float = 0, max_held: int = 256) -> RefusedKeyMiddleware:
    refused = RefusedKeys()
    refused.refuse(hash_api_key(FLOODER_KEY), PER_KEY, 1.5)
    return RefusedKeyMiddleware(Downstream(), refused, hold_seconds, max_held)


def downstream_calls(middleware: RefusedKeyMiddleware) -> int:
    assert isinstance(middleware.app, Downstream)
    return middleware.app.calls


async def test_a_refused_key_is_answered_429_without_the_app() -> None:
    middleware = refused_middleware()
    refused_before = REGISTRY.get_sample_value(
        "gateway_rate_limited_requests_total", {"scope": "key"}
    )
    start, body = await call(middleware, FLOODER_KEY)
    assert downstream_calls(middleware) == 0
    assert start["status"] == 429
    headers = dict(start["headers"])
    assert headers[b"content-type"] == b"application/problem+json"
    assert headers[b"retry-after"] == b"2"  # 1.5 s left, in whole seconds
    assert headers[b"ratelimit-policy"] == b'"per-key";q=3;w=2'
    assert headers[b"ratelimit"] == b'"per-key";r=0;t=2'
    assert int(headers[b"content-length"]) == len(body["body"])
    assert orjson.loads(body["body"]) == {
        "type": "about:blank",
        "title": "Too Many Requests",
        "status": 429,
        "detail": "over the per-key rate limit of 3 requests in 2 s: retry after 2 s",
    }
    assert (
        REGISTRY.get_sample_value("gateway_rate_limited_requests_total", {"scope": "key"})
        == (refused_before or 0) + 1
    )


@pytest.mark.parametrize("api_key", [OTHER_KEY, None])
async def test_other_keys_and_requests_without_one_reach_the_app(api_key: str | None) -> None:
    middleware = refused_middleware()
    [start, _] = await call(middleware, api_key)
    assert start["status"] == 201
    assert downstream_calls(middleware) == 1


async def test_the_refusal_is_held_before_it_is_sent() -> None:
    middleware = refused_middleware(hold_seconds=0.3)
    held_before = REGISTRY.get_sample_value("gateway_rate_limit_held_total") or 0
    started = time.monotonic()
    request = asyncio.create_task(call(middleware, FLOODER_KEY))
    await asyncio.sleep(0.1)
    assert not request.done()
    assert middleware.held == 1
    [start, _] = await request
    assert time.monotonic() - started >= 0.3
    assert start["status"] == 429
    # Retry-After is counted from the answer: 1.5 s recorded, 0.3 s of it spent holding.
    assert dict(start["headers"])[b"retry-after"] == b"2"
    assert middleware.held == 0
    assert REGISTRY.get_sample_value("gateway_rate_limit_held_total") == held_before + 1


async def test_beyond_the_cap_refusals_are_answered_at_once() -> None:
    middleware = refused_middleware(hold_seconds=0.5, max_held=2)
    held = [asyncio.create_task(call(middleware, FLOODER_KEY)) for _ in range(2)]
    await asyncio.sleep(0.05)
    assert middleware.held == 2
    started = time.monotonic()
    [start, _] = await call(middleware, FLOODER_KEY)
    assert time.monotonic() - started < 0.1
    assert start["status"] == 429
    assert not any(task.done() for task in held)
    await asyncio.gather(*held)
    assert middleware.held == 0


async def test_a_cancelled_hold_frees_its_place() -> None:
    middleware = refused_middleware(hold_seconds=5, max_held=1)
    held = asyncio.create_task(call(middleware, FLOODER_KEY))
    await asyncio.sleep(0.05)
    held.cancel()  # the server cancels the task when the client goes away
    with pytest.raises(asyncio.CancelledError):
        await held
    assert middleware.held == 0


class Parked:
    """The app behind the middleware, answering only when told: requests stay in progress."""

    def __init__(self) -> None:
        self.calls = 0
        self.release = asyncio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.calls += 1
        await self.release.wait()
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


def refused_a_moment_ago(*keys: str) -> RefusedKeys:
    """A table where each key was refused a moment ago, its window already free again: it is
    admitted, and capped (the in-flight cap is for keys refused within the last window)."""
    refused = RefusedKeys()
    for key in keys:
        refused.refuse(hash_api_key(key), PER_KEY, 0)
    return refused


async def test_a_key_refused_lately_over_its_in_flight_cap_is_answered_429_without_the_app() -> (
    None
):
    app = Parked()
    middleware = RefusedKeyMiddleware(
        app, refused_a_moment_ago(FLOODER_KEY, OTHER_KEY), 0, 256, max_in_flight=2
    )
    refused_before = REGISTRY.get_sample_value(
        "gateway_rate_limited_requests_total", {"scope": "in_flight"}
    )
    in_progress = [asyncio.create_task(call(middleware, FLOODER_KEY)) for _ in range(2)]
    await asyncio.sleep(0.01)
    assert app.calls == 2
    start, body = await call(middleware, FLOODER_KEY)
    assert app.calls == 2  # the third never reached the app
    assert start["status"] == 429
    headers = dict(start["headers"])
    assert headers[b"content-type"] == b"application/problem+json"
    assert headers[b"retry-after"] == b"1"
    assert orjson.loads(body["body"])["detail"] == (
        "more than 2 requests with this API key in progress at once: retry after 1 s"
    )
    assert (
        REGISTRY.get_sample_value("gateway_rate_limited_requests_total", {"scope": "in_flight"})
        == (refused_before or 0) + 1
    )
    # Another key, refused lately too, has a count of its own; a request without a key has none.
    others = [asyncio.create_task(call(middleware, key)) for key in (OTHER_KEY, OTHER_KEY, None)]
    await asyncio.sleep(0.01)
    assert app.calls == 5
    assert middleware._in_flight == {hash_api_key(FLOODER_KEY): 2, hash_api_key(OTHER_KEY): 2}
    app.release.set()
    for request in [*in_progress, *others]:
        [start, _] = await request
        assert start["status"] == 201
    # Finished requests leave the table: the key may send its two again.
    assert middleware._in_flight == {}
    [start, _] = await call(middleware, FLOODER_KEY)
    assert start["status"] == 201


async def test_a_key_within_its_limit_is_never_capped() -> None:
    """A merchant whose bank answers slowly may have many requests in progress: until its
    limiter refuses it, none is turned away, though another key is refused lately."""
    app = Parked()
    middleware = RefusedKeyMiddleware(
        app, refused_a_moment_ago(FLOODER_KEY), 0, 256, max_in_flight=2
    )
    in_progress = [asyncio.create_task(call(middleware, OTHER_KEY)) for _ in range(10)]
    await asyncio.sleep(0.01)
    assert app.calls == 10
    assert middleware._in_flight == {}  # nothing counted for a key that is not capped
    app.release.set()
    assert [(await request)[0]["status"] for request in in_progress] == [201] * 10


async def test_the_cap_ends_a_window_after_the_keys_refusal_ends() -> None:
    app = Parked()
    refused = RefusedKeys()
    # Its refusal ended a whole window ago: still in the table, no longer refused lately.
    refused.refuse(hash_api_key(FLOODER_KEY), PER_KEY, -PER_KEY.window_seconds)
    middleware = RefusedKeyMiddleware(app, refused, 0, 256, max_in_flight=1)
    in_progress = [asyncio.create_task(call(middleware, FLOODER_KEY)) for _ in range(3)]
    await asyncio.sleep(0.01)
    assert app.calls == 3
    assert len(refused) == 0  # the stale entry is gone
    app.release.set()
    assert [(await request)[0]["status"] for request in in_progress] == [201] * 3


async def test_an_in_flight_refusal_is_held_like_the_others() -> None:
    app = Parked()
    middleware = RefusedKeyMiddleware(
        app, refused_a_moment_ago(FLOODER_KEY), 0.2, 256, max_in_flight=1
    )
    first = asyncio.create_task(call(middleware, FLOODER_KEY))
    await asyncio.sleep(0.01)
    started = time.monotonic()
    [start, _] = await call(middleware, FLOODER_KEY)
    assert time.monotonic() - started >= 0.2
    assert start["status"] == 429
    app.release.set()
    await first


def test_a_key_refused_within_the_last_window_is_paced_one_interval_per_admission(
    clock: Clock,
) -> None:
    interval = PER_KEY.window_seconds / PER_KEY.quota  # 2 s / 3
    refused = RefusedKeys()
    refused.pace("hash-a", PER_KEY)  # never refused: admissions record nothing
    assert len(refused) == 0
    refused.refuse("hash-a", PER_KEY, 0.1)
    clock.now += 0.1  # its window frees a slot
    assert refused.refusal("hash-a") is None
    refused.pace("hash-a", PER_KEY)  # the limiter admits one: the next waits one interval
    refusal = refused.refusal("hash-a")
    assert refusal is not None
    assert refusal.until == pytest.approx(clock.now + interval)
    clock.now += interval
    assert refused.refusal("hash-a") is None
    # A window after its last admission without a refusal, the key is no longer paced.
    clock.now += PER_KEY.window_seconds
    refused.pace("hash-a", PER_KEY)
    assert refused.refusal("hash-a") is None
    assert len(refused) == 0


async def test_a_key_refused_meanwhile_is_refused_by_the_limiter_without_the_storage(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    refused = RefusedKeys()
    limits = RateLimiter(
        MemoryStorage(), PER_KEY, RatePolicy("per-address", "address", 1, 2), refused=refused
    )
    for _ in range(3):
        await limits.check(limits.per_key, "hash-a")
    with pytest.raises(RateLimited):
        await limits.check(limits.per_key, "hash-a")  # over: refused until a slot frees

    async def no_storage(*_: object, **__: object) -> bool:
        raise AssertionError("a key recorded as refused must not reach the storage")

    # A request that passed the middleware just before the refusal is refused too.
    monkeypatch.setattr(limits._strategy, "hit", no_storage)
    with pytest.raises(RateLimited) as refusal:
        await limits.check(limits.per_key, "hash-a")
    assert refusal.value.headers is not None
    assert refusal.value.headers["Retry-After"] == "2"


@pytest.mark.parametrize("pace", [True, False])
async def test_with_pacing_on_an_admission_of_a_key_refused_lately_refuses_it_briefly(
    pace: bool,
) -> None:
    refused = RefusedKeys()
    limits = RateLimiter(
        MemoryStorage(),
        PER_KEY,
        RatePolicy("per-address", "address", 1, 2),
        refused=refused,
        pace=pace,
    )
    refused.refuse("hash-b", PER_KEY, 0)  # refused, and its window has already freed a slot
    await limits.check(limits.per_key, "hash-b")  # admitted
    assert (refused.refusal("hash-b") is not None) is pace
    await limits.check(limits.per_key, "hash-c")  # never refused: never paced
    assert refused.refusal("hash-c") is None
