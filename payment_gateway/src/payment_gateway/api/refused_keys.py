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

The trade-off: a request sent while its key is known refused gets its 429 up to the hold later
than it would have. A client that honours `Retry-After` never sends then, except requests it
already had in flight (or another process sharing the key) when the first 429 came back.
The first refusal of a window, which tells the limiter the key is over, is never held.

Answers from here are counted in `gateway_rate_limited_requests_total{scope="key"}` like the
others; in the HTTP metrics their route is `unmatched`, as routing never ran.
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


class Refusal(NamedTuple):
    until: float  # time.monotonic() at which the window frees a slot
    policy: RatePolicy


class RefusedKeys:
    """Per process: API-key hashes over their limit, each until its window frees a slot."""

    def __init__(self) -> None:
        self._refusals: dict[str, Refusal] = {}

    def __len__(self) -> int:  # expired entries included until looked up or purged
        return len(self._refusals)

    def refuse(self, key_hash: str, policy: RatePolicy, seconds: float) -> None:
        """Record that ``key_hash`` stays refused for ``seconds`` (the window's reset)."""
        now = time.monotonic()
        if len(self._refusals) >= PURGE_ABOVE:
            self._refusals = {k: r for k, r in self._refusals.items() if r.until > now}
        self._refusals[key_hash] = Refusal(now + seconds, policy)

    def refusal(self, key_hash: str) -> Refusal | None:
        """The key's refusal while it lasts; None once its window has reset."""
        refusal = self._refusals.get(key_hash)
        if refusal is None:
            return None
        if refusal.until <= time.monotonic():
            del self._refusals[key_hash]
            return None
        return refusal


class _Answer(NamedTuple):
    headers: list[tuple[bytes, bytes]]
    body: bytes


class RefusedKeyMiddleware:
    """Answers 429 for a key in ``refused``, after holding it, without calling the app."""

    def __init__(
        self, app: ASGIApp, refused: RefusedKeys, hold_seconds: float, max_held: int
    ) -> None:
        self.app = app
        self.refused = refused
        self.hold_seconds = hold_seconds
        self.max_held = max_held
        self.held = 0  # refusals being held right now, in this worker
        self._answers: dict[tuple[str, int], _Answer] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The hot path, with no key refused: one truth test.
        if not self.refused or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        api_key = _bearer_token(scope["headers"])
        refusal = self.refused.refusal(hash_api_key(api_key)) if api_key else None
        if refusal is None:
            await self.app(scope, receive, send)
            return
        RATE_LIMITED.labels("key").inc()
        if self.hold_seconds and self.held < self.max_held:
            RATE_LIMIT_HELD.inc()
            self.held += 1
            try:
                await asyncio.sleep(self.hold_seconds)
            finally:
                self.held -= 1
        # Whole seconds, at least 1, from the time of the answer (as the limiter's own 429).
        retry_after = max(1, math.ceil(refusal.until - time.monotonic()))
        answer = self._answer(refusal.policy, retry_after)
        await send({"type": "http.response.start", "status": 429, "headers": answer.headers})
        await send({"type": "http.response.body", "body": answer.body})

    def _answer(self, policy: RatePolicy, retry_after: int) -> _Answer:
        """The 429's head and body, built once per policy and Retry-After value."""
        answer = self._answers.get((policy.name, retry_after))
        if answer is None:
            body = orjson.dumps(
                {
                    "type": "about:blank",
                    "title": "Too Many Requests",
                    "status": 429,
                    "detail": policy.refusal_detail(retry_after),
                }
            )
            headers = [
                (b"content-type", PROBLEM_JSON.encode()),
                (b"content-length", str(len(body)).encode()),
                *(
                    (name.lower().encode(), value.encode())
                    for name, value in policy.refusal_headers(0, retry_after).items()
                ),
            ]
            answer = self._answers[(policy.name, retry_after)] = _Answer(headers, body)
        return answer


def _bearer_token(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The token the limiter keyed its refusal on: parsed exactly as the routes parse it."""
    for name, value in headers:
        if name == b"authorization":
            return bearer_credentials(value.decode("latin-1"))
    return None
