"""Sends one signed webhook attempt to a merchant's URL (Standard Webhooks).

Each attempt checks the URL again (addresses.py: the name may resolve elsewhere since it was
registered) and connects to the very address it checked: the URL's host is replaced by that
IP, the Host header keeps the name, and for https the ``sni_hostname`` extension makes TLS
send and verify the name. Redirects are never followed, since a redirect could point anywhere
the checks refuse. Every fault comes back as a SendResult: a delivery loop never has to catch.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import ssl
import time
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
from standardwebhooks import Webhook

from payment_gateway.domain.webhooks import (
    EXCERPT_BYTES,
    SendResult,
    UnsafeWebhookUrl,
    WebhookMessage,
)
from payment_gateway.http_transport import Answer, Http11Transport, acquire_until
from payment_gateway.webhooks.addresses import ResolvedUrl, UrlGuard
from payment_gateway.webhooks.retry_after import parse_retry_after

log = logging.getLogger(__name__)

USER_AGENT = "payment-gateway-webhooks/1.0"
DEFAULT_TIMEOUT_SECONDS = 10.0
KEEPALIVE_SECONDS = 4.0  # below common server idle timeouts (uvicorn's is 5 s)
_ERROR_CHARS = 200

Origin = tuple[str, str]  # (scheme, host name): what a pool of connections serves


def sign(message: WebhookMessage, timestamp: int) -> str:
    """The `webhook-signature` header: one ``v1,<base64>`` per secret, by the library."""
    when = datetime.fromtimestamp(timestamp, tz=UTC)
    text = message.body.decode("utf-8")  # the library signs text; UTF-8 gives the body's bytes
    return " ".join(
        _signer(secret).sign(message.event_id, when, text) for secret in message.secrets
    )


@functools.lru_cache(maxsize=1024)
def _signer(secret: str) -> Webhook:
    """The library's signer of a secret, kept: making one decodes the secret's base64."""
    return Webhook(secret)


class HttpWebhookSender:
    """POSTs webhook messages; one keep-alive pool per scheme and host name, closed by
    ``aclose()``.

    A pool per name rather than one for all: pooled connections are keyed by the IP in the
    URL, and two names on one IP (a shared host, a CDN) must not share a TLS connection that
    was verified for only one of them. The least recently used idle pools are closed beyond
    ``max_hosts``. Requests go straight to a transport, as the bank adapter's do: the client
    layer (URL merging, auth, cookies, redirects) has nothing to do here, and it and the URL
    rebuilt for every attempt were half of a webhook's CPU in a profile at c16.
    """

    def __init__(
        self,
        guard: UrlGuard,
        *,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        tls_context: ssl.SSLContext | None = None,
        max_connections_per_host: int = 10,
        max_hosts: int = 256,
    ) -> None:
        self._guard = guard
        self._timeout = timeout_seconds
        self._timeouts = dict.fromkeys(("connect", "read", "write", "pool"), timeout_seconds)
        self._tls: ssl.SSLContext | bool = tls_context if tls_context is not None else True
        self._max_hosts = max_hosts
        self._max_connections = max_connections_per_host
        self._pools: OrderedDict[Origin, httpx.AsyncBaseTransport] = OrderedDict()
        self._busy: Counter[Origin] = Counter()
        # At most a pool's worth of requests in flight per host: the rest wait here, not in
        # httpcore's pool, whose every hand-over scans all its queued requests (a cycle of
        # 100 deliveries to one host made that scan a tenth of the gateway's CPU).
        self._slots: dict[Origin, asyncio.Semaphore] = {}

    async def aclose(self) -> None:
        pools = list(self._pools.values())
        self._pools.clear()
        for pool in pools:
            await pool.aclose()

    async def send(self, url: str, message: WebhookMessage) -> SendResult:
        started = time.monotonic()
        deadline = asyncio.get_running_loop().time() + self._timeout
        try:
            async with asyncio.timeout_at(deadline):
                resolved = await self._guard.check(url)
        except UnsafeWebhookUrl as exc:
            return _failed(started, f"unsafe url: {exc.reason}")
        except TimeoutError:
            return _failed(started, "timeout")
        timestamp = int(time.time())
        try:
            signature = sign(message, timestamp)
        except Exception:  # a corrupt stored secret; never shown, it is a secret
            return _failed(started, "cannot sign: a secret is not a valid whsec_ secret")
        try:
            return await self._post(resolved, message, (timestamp, signature), started, deadline)
        except TimeoutError:  # waited for one of the host's places until the deadline
            return _failed(started, "timeout")
        except Exception:
            # A bug of ours: still an attempt that failed, not a crashed delivery loop.
            log.exception("webhook %s to %s failed unexpectedly", message.event_id, resolved.host)
            return _failed(started, "unexpected error")

    async def _post(
        self,
        resolved: ResolvedUrl,
        message: WebhookMessage,
        signed: tuple[int, str],
        started: float,
        deadline: float,
    ) -> SendResult:
        extensions: dict[str, object] = {"timeout": self._timeouts}
        if resolved.scheme == "https":
            extensions["sni_hostname"] = resolved.host
        refused: httpx.ConnectError | None = None
        origin = (resolved.scheme, resolved.host)
        async with self._pool(origin) as pool, self._slot(origin, deadline):
            for address in resolved.addresses:
                target, host = _target(resolved.url, address)
                headers = [
                    (b"host", host.encode()),
                    (b"webhook-id", message.event_id.encode()),
                    (b"webhook-timestamp", b"%d" % signed[0]),
                    (b"webhook-signature", signed[1].encode()),
                    (b"content-type", b"application/json"),
                    (b"user-agent", USER_AGENT.encode()),
                    # The excerpt is read raw: no decompression bomb.
                    (b"accept-encoding", b"identity"),
                ]
                try:
                    async with asyncio.timeout_at(deadline):
                        if isinstance(pool, Http11Transport):  # http: no httpx objects
                            answer = await pool.send(
                                "POST", target, headers, message.body, self._timeouts
                            )
                            return _whole(answer, started)
                        response = await pool.handle_async_request(
                            httpx.Request(
                                "POST",
                                target,
                                content=message.body,
                                headers=headers,
                                extensions=extensions,
                            )
                        )
                except httpx.ConnectError as exc:
                    refused = exc  # nothing was sent: the next address may answer
                    continue
                except (httpx.HTTPError, TimeoutError) as exc:
                    return _failed(started, _describe(exc))
                return await _answered(response, started, deadline)
        assert refused is not None, "a checked URL has at least one address"
        return _failed(started, _describe(refused))

    @contextlib.asynccontextmanager
    async def _pool(self, origin: Origin) -> AsyncIterator[httpx.AsyncBaseTransport]:
        pool = self._pools.pop(origin, None) or self._new_pool(origin[0])
        self._pools[origin] = pool  # most recently used last
        self._busy[origin] += 1
        self._slots.setdefault(origin, asyncio.Semaphore(self._max_connections))
        try:
            yield pool
        finally:
            self._busy[origin] -= 1
            if not self._busy[origin]:
                del self._busy[origin]
                del self._slots[origin]  # nobody holds or waits for it any more
            await self._close_idle_beyond_limit()

    def _new_pool(self, scheme: str) -> httpx.AsyncBaseTransport:
        if scheme == "http":
            # Plain http (development, the benchmark's receiver) over the lean transport the
            # bank uses. https, every endpoint in production, keeps httpx's own for TLS.
            return Http11Transport(
                max_connections=self._max_connections, keepalive_expiry=KEEPALIVE_SECONDS
            )
        # A transport reads no proxy from the environment (a proxy would connect by name, not
        # to the address that was checked); trust_env=False keeps SSL_CERT_FILE out as well.
        return httpx.AsyncHTTPTransport(
            verify=self._tls,
            trust_env=False,
            limits=httpx.Limits(
                max_connections=self._max_connections,
                max_keepalive_connections=self._max_connections,
                keepalive_expiry=KEEPALIVE_SECONDS,
            ),
        )

    @contextlib.asynccontextmanager
    async def _slot(self, origin: Origin, deadline: float) -> AsyncIterator[None]:
        """One of the host's in-flight places, waited for within the attempt's deadline (as
        httpx's pool timeout did), held until the answer has been read."""
        slot = self._slots[origin]
        await acquire_until(slot, deadline)
        try:
            yield
        finally:
            slot.release()

    async def _close_idle_beyond_limit(self) -> None:
        while len(self._pools) > self._max_hosts:
            idle = next((origin for origin in self._pools if not self._busy[origin]), None)
            if idle is None:
                return  # all in use: over the limit for a moment, never closed under a send
            await self._pools.pop(idle).aclose()


@functools.lru_cache(maxsize=1024)
def _target(url: str, address: str) -> tuple[httpx.URL, str]:
    """The URL to connect to (its host replaced by the checked address, no fragment) and the
    Host header that keeps the name; cached, since every attempt to an endpoint needs the
    same."""
    parsed = httpx.URL(url).copy_with(fragment=None)
    return parsed.copy_with(host=address), parsed.netloc.decode("ascii")


def _whole(answer: Answer, started: float) -> SendResult:
    """The result of an answer the lean http transport read whole (it bounds its size)."""
    return _result(
        answer.status, answer.body[:EXCERPT_BYTES], answer.header("retry-after"), started
    )


async def _answered(response: httpx.Response, started: float, deadline: float) -> SendResult:
    excerpt = await _excerpt(response, deadline)
    return _result(response.status_code, excerpt, response.headers.get("retry-after"), started)


def _result(
    status: int, excerpt: bytes | bytearray, retry_after: str | None, started: float
) -> SendResult:
    return SendResult(
        status_code=status,
        duration_ms=_elapsed_ms(started),
        error="redirects are not followed" if 300 <= status < 400 else None,
        response_excerpt=excerpt.decode("utf-8", errors="replace"),
        retry_after_seconds=parse_retry_after(retry_after),
    )


async def _excerpt(response: httpx.Response, deadline: float) -> bytearray:
    excerpt = bytearray()
    try:
        async with asyncio.timeout_at(deadline):
            async for chunk in response.aiter_raw():
                excerpt += chunk[: EXCERPT_BYTES - len(excerpt)]
                if len(excerpt) >= EXCERPT_BYTES:
                    break  # the rest is not read: a receiver cannot make us download a file
    except (httpx.HTTPError, TimeoutError):
        pass  # the status has come, and it is the answer; the excerpt is what came with it
    finally:
        await response.aclose()
    return excerpt


def _failed(started: float, error: str) -> SendResult:
    return SendResult(
        status_code=None,
        duration_ms=_elapsed_ms(started),
        error=error,
        response_excerpt=None,
        retry_after_seconds=None,
    )


def _elapsed_ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


def _describe(exc: BaseException) -> str:
    """A short reason for an attempt's log and the deliveries list."""
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return "timeout"
    causes = _causes(exc)
    if any(isinstance(cause, ConnectionRefusedError) for cause in causes) or (
        "refused" in str(exc).lower()
    ):
        return "connection refused"
    if any(isinstance(cause, ssl.SSLError) for cause in causes):
        return f"tls error: {exc}"[:_ERROR_CHARS]
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect: {exc}"[:_ERROR_CHARS]
    if isinstance(exc, httpx.RemoteProtocolError):
        return f"protocol error: {exc}"[:_ERROR_CHARS]
    return f"{type(exc).__name__}: {exc}"[:_ERROR_CHARS]


def _causes(exc: BaseException) -> list[BaseException]:
    found: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(found) < 10:
        found.append(current)
        current = current.__cause__ or current.__context__
    return found
