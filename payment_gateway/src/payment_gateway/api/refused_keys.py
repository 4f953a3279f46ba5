"""Refusals for API keys already known to be over their limit, answered before routing.

Why: under a flood, a refusal that goes the whole way (routing, the body read, the dependency
solver, the limiter's storage) costs about as much CPU as a payment, so a merchant that ignores
`Retry-After` takes the CPU that the other merchants' payments need. Two standard remedies, both
per process and both only for keys the limiter has just refused:

* a cheap refusal: when the limiter refuses a key it records until when the key stays refused
  (the moving window's reset, when its oldest request leaves the window: nothing can free a
  slot before then, on any replica). Until then this pure-ASGI middleware answers the key's
  requests itself, from pre-built bytes: no routing, no body read, no database, no bank and
  no rate-limit storage call (with Redis: no round trip);
* a tarpit (HAProxy's `http-request tarpit`, Fastly's `resp.tarpit`): such a refusal is held
  `RATE_LIMIT_HOLD_SECONDS` before it is sent, so a client that ignores `Retry-After` can send
  one request per connection per hold instead of one per round trip. Holding costs a sleeping
  task and an open connection, not CPU; at most `RATE_LIMIT_MAX_HELD` refusals are held at
  once per worker (well under uvicorn's `--limit-concurrency`), and beyond that they are
  answered at once, so a flooder cannot use the hold to fill the worker's connection slots.

Two fairness levers against a key that floods within its quota (README, Rate limits, gives
what the fair-use bench measured):

* a cap on requests in progress for a key refused lately, from the limiter's refusal until
  one window after it lifts (`RATE_LIMIT_MAX_IN_FLIGHT`, per worker, 4 by default; Stripe's
  "concurrent requests limiter", applied to the keys that flood): the key's next request is
  answered 429 here, held like the others, so the slots its window gives back run a few
  requests at a time instead of one per flooding connection, and the other keys' requests do
  not queue behind all of them. A key not refused lately is never capped, whatever its
  concurrency: a merchant whose bank answers slowly keeps every request it is allowed.
  Requests a key had in progress when it was first refused are not counted (they were
  admitted uncapped); with pacing on, a paced key stays refused lately while it is paced;
* pacing (`RATE_LIMIT_PACE`, off by default, in RefusedKeys): a key refused within the last
  window gets its slots back one interval apart instead of in the burst it spent them in.

The trade-off: a request sent while its key is known refused gets its 429 up to the hold later
than it would have. A client that honours `Retry-After` never sends then, except requests it
already had in flight (or another process sharing the key) when the first 429 came back.
The first refusal of a window, which tells the limiter the key is over, is never held.

Answers from here are counted in `gateway_rate_limited_requests_total{scope="key"}` like the
others (`scope="in_flight"` for the cap); in the HTTP metrics their route is `unmatched`, as
routing never ran.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import TYPE_CHECKING, NamedTuple

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from payment_gateway.api.bearer import bearer_credentials
from payment_gateway.api.problems import PROBLEM_JSON
from payment_gateway.metrics import RATE_LIMIT_HELD, RATE_LIMITED
from payment_gateway.service.merchants import hash_api_key

if TYPE_CHECKING:
    from payment_gateway.api.rate_limit import RatePolicy

# Only keys that authenticated are recorded, so the table is as large as the set of merchants
# refused within one window; past this size, entries whose window has reset are dropped.
PURGE_ABOVE = 4096

API_PATH = "/api/"  # the routes that take an API key


class Refusal(NamedTuple):
    until: float  # time.monotonic() at which the window frees a slot (or the pace allows one)
    policy: RatePolicy
    # Until then the key is "refused lately": capped in flight, and paced if pacing is on.
    lately_until: float


class RefusedKeys:
    """Per process: API-key hashes over their limit, each until its window frees a slot.

    Pacing (with RATE_LIMIT_PACE; RateLimiter calls pace()): a moving window gives a key
    that floods its slots back in the rhythm it spent them, so the burst it was allowed at
    first comes back, just as dense, every window (200 payments in a few tens of
    milliseconds every 2 s, at the defaults) and the other merchants' requests wait behind
    it. So for one window after a refusal, each request the limiter admits for the key
    refuses the key again for one interval (window / quota: 10 ms at the defaults): its
    slots come back one interval apart, as from a token bucket, never more than its quota.
    A key within its limit is never refused, so never paced: its burst stays available.
    """

    def __init__(self) -> None:
        self._refusals: dict[str, Refusal] = {}
        self._last_lately_until = 0.0  # the latest lately_until in the table

    def __len__(self) -> int:  # expired entries included until looked up or purged
        return len(self._refusals)

    def __bool__(self) -> bool:
        """Whether any key may be refused lately: the middleware's one test per request. Once
        the last entry has expired the table is emptied, so that a key refused once, which
        never comes back, does not cost every later request a key hash."""
        if self._refusals and self._last_lately_until <= time.monotonic():
            self._refusals.clear()
        return bool(self._refusals)

    def refuse(self, key_hash: str, policy: RatePolicy, seconds: float) -> None:
        """Record that ``key_hash`` stays refused for ``seconds`` (the window's reset)."""
        now = time.monotonic()
        if len(self._refusals) >= PURGE_ABOVE:
            self._refusals = {k: r for k, r in self._refusals.items() if r.lately_until > now}
        until = now + seconds
        self._remember(key_hash, Refusal(until, policy, until + policy.window_seconds))

    def pace(self, key_hash: str, policy: RatePolicy) -> None:
        """The limiter admitted a request of ``key_hash``: if the key was refused within the
        last window, refuse it for one interval (window / quota)."""
        refusal = self._refusals.get(key_hash)
        if refusal is None:  # the hot path: a key that was not refused lately
            return
        now = time.monotonic()
        if refusal.lately_until <= now:
            del self._refusals[key_hash]
            return
        interval = policy.window_seconds / policy.quota
        self._remember(
            key_hash,
            Refusal(max(refusal.until, now + interval), policy, now + policy.window_seconds),
        )

    def _remember(self, key_hash: str, refusal: Refusal) -> None:
        self._refusals[key_hash] = refusal
        self._last_lately_until = max(self._last_lately_until, refusal.lately_until)

    def refused_lately(self, key_hash: str) -> bool:
        """Whether the key was refused (or paced) lately: until a window after that lifted."""
        refusal = self._refusals.get(key_hash)
        return refusal is not None and refusal.lately_until > time.monotonic()

    def refusal(self, key_hash: str) -> Refusal | None:
        """The key's refusal while it lasts; None once its window has reset."""
        refusal = self._refusals.get(key_hash)
        if refusal is None:
            return None
        now = time.monotonic()
        if refusal.until <= now:
            if refusal.lately_until <= now:
                del self._refusals[key_hash]
            return None
        return refusal


class _Answer(NamedTuple):
    headers: list[tuple[bytes, bytes]]
    body: bytes


class RefusedKeyMiddleware:
    """Answers 429 for a key in ``refused``, after holding it, without calling the app."""

    def __init__(
        self,
        app: ASGIApp,
        refused: RefusedKeys,
        hold_seconds: float,
        max_held: int,
        max_in_flight: int = 0,
    ) -> None:
        self.app = app
        self.refused = refused
        self.hold_seconds = hold_seconds
        self.max_held = max_held
        self.max_in_flight = max_in_flight
        self.held = 0  # refusals being held right now, in this worker
        self._in_flight: dict[str, int] = {}  # key hash -> its requests in progress here
        self._answers: dict[tuple[str, int], _Answer] = {}
        self._busy_answer = _problem_answer(
            f"more than {max_in_flight} requests with this API key in progress at once: "
            "retry after 1 s",
            {"Retry-After": "1"},
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The hot path, with no key refused lately in this process: one truth test. Only
        # the API authenticates by key: health, readiness, the docs and the shopper's pages
        # are never refused for a key their caller happens to send (a probe, a browser).
        if not self.refused or scope["type"] != "http" or not scope["path"].startswith(API_PATH):
            await self.app(scope, receive, send)
            return
        api_key = _bearer_token(scope["headers"])
        if not api_key:  # 401 from the routes; the per-address limit applies there
            await self.app(scope, receive, send)
            return
        key_hash = hash_api_key(api_key)
        refusal = self.refused.refusal(key_hash)
        if refusal is not None:
            RATE_LIMITED.labels("key").inc()
            await self._hold()
            # Whole seconds, at least 1, from the time of the answer (as the limiter's own 429).
            retry_after = max(1, math.ceil(refusal.until - time.monotonic()))
            await _send(send, self._answer(refusal.policy, retry_after))
            return
        if not self.max_in_flight or not self.refused.refused_lately(key_hash):
            await self.app(scope, receive, send)
            return
        in_flight = self._in_flight.get(key_hash, 0)
        if in_flight >= self.max_in_flight:
            RATE_LIMITED.labels("in_flight").inc()
            await self._hold()
            await _send(send, self._busy_answer)
            return
        self._in_flight[key_hash] = in_flight + 1
        try:
            await self.app(scope, receive, send)
        finally:
            left = self._in_flight[key_hash] - 1
            if left:
                self._in_flight[key_hash] = left
            else:  # the table holds only keys with requests in progress
                del self._in_flight[key_hash]

    async def _hold(self) -> None:
        """The tarpit: sleep the hold, unless max_held refusals already sleep."""
        if not self.hold_seconds or self.held >= self.max_held:
            return
        RATE_LIMIT_HELD.inc()
        self.held += 1
        try:
            await asyncio.sleep(self.hold_seconds)
        finally:
            self.held -= 1

    def _answer(self, policy: RatePolicy, retry_after: int) -> _Answer:
        """The 429's head and body, built once per policy and Retry-After value."""
        answer = self._answers.get((policy.name, retry_after))
        if answer is None:
            answer = self._answers[(policy.name, retry_after)] = _problem_answer(
                policy.refusal_detail(retry_after), policy.refusal_headers(0, retry_after)
            )
        return answer


def _problem_answer(detail: str, headers: dict[str, str]) -> _Answer:
    """A 429 problem+json's head and body, as bytes ready to send."""
    body = orjson.dumps(
        {"type": "about:blank", "title": "Too Many Requests", "status": 429, "detail": detail}
    )
    return _Answer(
        [
            (b"content-type", PROBLEM_JSON.encode()),
            (b"content-length", str(len(body)).encode()),
            *((name.lower().encode(), value.encode()) for name, value in headers.items()),
        ],
        body,
    )


async def _send(send: Send, answer: _Answer) -> None:
    await send({"type": "http.response.start", "status": 429, "headers": answer.headers})
    await send({"type": "http.response.body", "body": answer.body})


def _bearer_token(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The token the limiter keyed its refusal on: parsed exactly as the routes parse it."""
    for name, value in headers:
        if name == b"authorization":
            return bearer_credentials(value.decode("latin-1"))
    return None
