"""A lean HTTP/1.1 keep-alive transport for httpx, for plain-http peers: the bank on its
private network, and webhook endpoints where http is allowed (development, the benchmark).

httpx's default transport (httpcore with the pure-Python h11 parser, over anyio) costs more CPU
per bank call than everything else the gateway does for a payment, and as much again per
webhook. This transport does the exchange on an asyncio protocol with httptools, the C parser
uvicorn uses, and raises httpx's exceptions. It serves httpx's interface (``httpx.Request`` in,
``httpx.Response`` out) and a leaner one of its own, ``send``: bytes in, an ``Answer`` out. The
bank adapter and the webhook sender call ``send``, since building the two httpx objects around
each exchange was 6-8 % of the gateway's CPU (README, Performance). An https peer keeps
httpx's own transport: TLS is not this module's business.

What it promises, as httpcore does: a request is written once and never retried; a connection
is reused only after a complete response that allows it, and never once it has seen a byte or
an EOF while idle; every failure is an ``httpx.TransportError`` that says whether the request
could have reached the server (``ConnectError``/``ConnectTimeout``/``PoolTimeout``: it did not).
"""

# httpx's transport interface names these things: not ours to change.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import NamedTuple, cast

import httptools
import httpx

MAX_RESPONSE_BYTES = 1024 * 1024  # a bank answer is a few hundred bytes, a webhook answer less

Header = tuple[bytes, bytes]
Timeouts = Mapping[str, float | None]  # httpx's phases: connect, read, write, pool


class Answer(NamedTuple):
    """A whole HTTP answer, as ``send`` returns it."""

    status: int
    headers: Sequence[Header]  # as they came, names in their case
    body: bytes

    def header(self, name: str) -> str | None:
        """The last value of the header ``name`` (any case), or None."""
        wanted = name.lower().encode("latin-1")
        found = [value for key, value in self.headers if key.lower() == wanted]
        return found[-1].decode("latin-1") if found else None


class _Connection(asyncio.Protocol):
    """One TCP connection; one request/response exchange at a time."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._answer: asyncio.Future[Answer] | None = None
        self._parser: httptools.HttpResponseParser | None = None
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._body_size = 0
        self._headers_done = False
        self._complete = False
        self.reusable = False  # set after a complete keep-alive response
        self.closed = False
        self.idle_since = 0.0

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._answer is None or self._parser is None:
            # Bytes on an idle connection: stale or unsolicited. Its framing is unknown now.
            self.close()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(httpx.RemoteProtocolError("the server switched protocols"))
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(f"malformed answer from the server: {exc}"))

    def eof_received(self) -> bool:
        self.closed = True  # the peer is done with it: never hand it out again
        self.reusable = False
        self._finish_at_eof()
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.reusable = False
        self._finish_at_eof()

    # -- httptools callbacks

    def on_message_begin(self) -> None:
        if self._complete:
            # A second answer behind the one we asked for: the framing can't be trusted.
            self.close()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._headers_done = True

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        if self._body_size > MAX_RESPONSE_BYTES:
            self._fail(httpx.RemoteProtocolError("the server's answer is too large"))
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        assert self._parser is not None
        self._complete = True
        self.reusable = self._parser.should_keep_alive()
        self._resolve()

    # -- the exchange

    async def exchange(self, request: bytes, timeout: float | None) -> Answer:
        """Write the request; its whole answer, or ``httpx.ReadTimeout`` after ``timeout``."""
        assert self._transport is not None
        assert self._answer is None, "one exchange at a time"
        if self.closed or self._transport.is_closing():
            # Closed by the peer since it was pooled: nothing was written, nothing was sent.
            raise httpx.ConnectError("the pooled connection was closed")
        loop = asyncio.get_running_loop()
        self._answer = loop.create_future()
        self._parser = httptools.HttpResponseParser(self)
        self._headers, self._body, self._body_size = [], [], 0
        self._headers_done = False
        self._complete = False
        self.reusable = False
        self._transport.write(request)
        # A timer that fails the answer, lighter than an asyncio.timeout block (timers were
        # 5 % of the gateway's CPU, two per payment here).
        timer = None if timeout is None else loop.call_later(timeout, self._time_out)
        try:
            return await self._answer
        finally:
            if timer is not None:
                timer.cancel()
            self._answer = None
            self._parser = None

    def _resolve(self) -> None:
        answer, parser = self._answer, self._parser
        if answer is None or answer.done() or parser is None:
            return
        answer.set_result(Answer(parser.get_status_code(), self._headers, b"".join(self._body)))

    def _time_out(self) -> None:
        self._fail(httpx.ReadTimeout("the server did not answer in time"))

    def _fail(self, error: Exception) -> None:
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(error)
        self.close()

    def _finish_at_eof(self) -> None:
        if self._answer is None or self._answer.done():
            return
        headers = {name.lower() for name, _ in self._headers}
        if self._headers_done and not headers & {b"content-length", b"transfer-encoding"}:
            # A body without a length ends where the connection does (RFC 9112 section 6.3).
            self._resolve()
        else:
            self._fail(httpx.RemoteProtocolError("the server closed the connection mid-answer"))

    @property
    def usable(self) -> bool:
        return not self.closed and self._transport is not None and not self._transport.is_closing()

    def close(self) -> None:
        self.closed = True
        self.reusable = False
        if self._transport is not None:
            self._transport.close()


async def acquire_until(places: asyncio.Semaphore, deadline: float | None) -> None:
    """Take one of ``places``, waiting until ``deadline`` (loop time) at most, else
    TimeoutError. A free one is taken without arming a timer: asyncio.timeout blocks were
    5 % of a gateway worker's CPU, and a place is free for most calls."""
    if places.locked():
        async with asyncio.timeout_at(deadline):
            await places.acquire()
    else:
        await places.acquire()


class Http11Transport(httpx.AsyncBaseTransport):
    """A keep-alive pool of at most ``max_connections`` connections to plain-http origins."""

    def __init__(self, *, max_connections: int = 100, keepalive_expiry: float = 4.0) -> None:
        # keepalive_expiry stays below common server idle timeouts (uvicorn's is 5 s), so a
        # connection is dropped here before the server drops it under a request in flight.
        self._max_connections = max_connections
        self._keepalive_expiry = keepalive_expiry
        self._slots: asyncio.Semaphore | None = None
        self._idle: dict[tuple[str, int], deque[_Connection]] = {}
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """httpx's interface, over ``send``."""
        try:
            answer = await self.send(
                request.method,
                request.url,
                request.headers.raw,
                request.content,
                request.extensions.get("timeout", {}),
                framed=True,
            )
        except httpx.RequestError as exc:
            exc.request = request
            raise
        return httpx.Response(
            answer.status, headers=answer.headers, content=answer.body, request=request
        )

    async def send(
        self,
        method: str,
        url: httpx.URL,
        headers: Sequence[Header],
        body: bytes | None,
        timeouts: Timeouts,
        *,
        framed: bool = False,
    ) -> Answer:
        """One request and its whole answer. Host and Content-Length are added unless
        ``framed`` says ``headers`` carry them already (an httpx.Request does)."""
        if url.scheme != "http":
            raise httpx.UnsupportedProtocol(f"{url.scheme!r} is not served by this transport")
        if self._closed:
            raise httpx.ConnectError("the transport is closed")
        request = _head(method, url, headers, body, framed=framed) + (body or b"")
        origin = (url.host, url.port or 80)
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._max_connections)
        pool_timeout = timeouts.get("pool")
        loop = asyncio.get_running_loop()
        try:
            await acquire_until(
                self._slots, None if pool_timeout is None else loop.time() + pool_timeout
            )
        except TimeoutError:
            raise httpx.PoolTimeout("no free connection to the server") from None
        try:
            connection = self._take_idle(origin)
            if connection is None:
                connection = await self._connect(origin, timeouts.get("connect"))
            try:
                answer = await connection.exchange(request, timeouts.get("read"))
            except BaseException:
                connection.close()
                raise
            if connection.reusable and connection.usable and not self._closed:
                connection.idle_since = time.monotonic()
                self._idle.setdefault(origin, deque()).append(connection)
            else:
                connection.close()
            return answer
        finally:
            self._slots.release()

    def _take_idle(self, origin: tuple[str, int]) -> _Connection | None:
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle:
            connection = idle.pop()  # the most recently used: the least likely to be stale
            if connection.usable and now - connection.idle_since < self._keepalive_expiry:
                return connection
            connection.close()
        return None

    @staticmethod
    async def _connect(origin: tuple[str, int], timeout: float | None) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                _, connection = await loop.create_connection(_Connection, *origin)
        except TimeoutError:
            raise httpx.ConnectTimeout("connecting to the server timed out") from None
        except OSError as exc:
            raise httpx.ConnectError(f"cannot connect to the server: {exc}") from exc
        # No TCP_NODELAY to set: asyncio and uvloop set it on every TCP transport.
        return connection

    async def aclose(self) -> None:
        self._closed = True
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()


def _head(
    method: str, url: httpx.URL, headers: Sequence[Header], body: bytes | None, *, framed: bool
) -> bytes:
    """Request line and headers; unless ``framed``, Host first and Content-Length last."""
    lines = [b"%s %s HTTP/1.1\r\n" % (method.encode(), url.raw_path)]
    if not framed:
        lines.append(b"host: %s\r\n" % url.netloc)
    lines.extend(b"%s: %s\r\n" % (name, value) for name, value in headers)
    if not framed and body is not None:
        lines.append(b"content-length: %d\r\n" % len(body))
    lines.append(b"\r\n")
    head = b"".join(lines)
    if head.count(b"\n") != len(lines) or head.count(b"\r") != len(lines):
        # A CR or LF inside a header would let its value start a header of its own.
        raise httpx.LocalProtocolError("line break in a request header")
    return head
