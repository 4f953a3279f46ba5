"""Http11Transport against real sockets: a scripted TCP server plays the bank, byte for byte.

What matters for money: a failure after the request may have reached the bank is never
reported as "not sent" (ConnectError/PoolTimeout), and a connection is reused only when it is
known to be clean.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import httpx
import pytest
from payment_gateway.http_transport import Http11Transport

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


# Every test here runs on both loops (see pytest_asyncio_loop_factories in conftest.py):
# production runs uvloop, whose transports differ from asyncio's in details.
TIMEOUTS = {"timeout": dict.fromkeys(("connect", "read", "write", "pool"), 2.0)}


@dataclass
class ScriptedServer:
    script: Script
    port: int = 0
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)

    def url(self, path: str = "/api/v1/deposit") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.script(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head + (await reader.readexactly(length) if length else b"")


def ok(body: bytes = b'{"code":"0"}', extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 201 Created\r\ncontent-length: %d\r\n%s\r\n%s" % (len(body), extra, body)


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Script], Awaitable[ScriptedServer]]]:
    servers: list[asyncio.Server] = []

    async def start(script: Script) -> ScriptedServer:
        scripted = ScriptedServer(script)
        server = await asyncio.start_server(scripted.handle, "127.0.0.1", 0)
        scripted.port = server.sockets[0].getsockname()[1]
        servers.append(server)
        return scripted

    yield start
    for server in servers:
        server.close()


@pytest.fixture
async def transport() -> AsyncIterator[Http11Transport]:
    pool = Http11Transport(max_connections=4)
    yield pool
    await pool.aclose()


def keep_answering(answer: bytes = ok(), server_box: list[ScriptedServer] | None = None) -> Script:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            request = await read_request(reader)
            if server_box:
                server_box[0].requests.append(request)
            writer.write(answer)
            await writer.drain()

    return script


async def send(
    transport: Http11Transport, url: str, body: bytes = b'{"a":1}', **headers: str
) -> httpx.Response:
    request = httpx.Request("POST", url, content=body, headers=headers, extensions=TIMEOUTS)
    return await transport.handle_async_request(request)


async def test_the_request_goes_out_as_http11_and_the_answer_comes_back(
    serve: Callable[[Script], Awaitable[ScriptedServer]], transport: Http11Transport
) -> None:
    box: list[ScriptedServer] = []
    server = await serve(keep_answering(ok(b'{"code":"0","id":"t"}'), box))
    box.append(server)
    response = await send(transport, server.url(), b'{"amount":1000}', **{"X-Request-ID": "r-1"})
    assert response.status_code == 201
    assert response.content == b'{"code":"0","id":"t"}'
    assert response.headers["content-length"] == "21"
    sent = server.requests[0]
    assert sent.startswith(b"POST /api/v1/deposit HTTP/1.1\r\n")
    assert f"host: 127.0.0.1:{server.port}\r\n".encode() in sent.lower()
    assert b"content-length: 15\r\n" in sent.lower()
    assert b"x-request-id: r-1\r\n" in sent.lower()
    assert sent.endswith(b'\r\n\r\n{"amount":1000}')


async def test_send_frames_the_request_itself_and_answers_bytes(
    serve: Callable[[Script], Awaitable[ScriptedServer]], transport: Http11Transport
) -> None:
    """The lean entry point the bank adapter and the webhook sender use: Host first,
    Content-Length for a body (none without one), the answer whole."""
    box: list[ScriptedServer] = []
    server = await serve(keep_answering(ok(b"{}", extra=b"Retry-After: 7\r\n"), box))
    box.append(server)
    url = httpx.URL(server.url())
    timeouts = TIMEOUTS["timeout"]
    posted = await transport.send("POST", url, [(b"X-Request-ID", b"r-2")], b"[1]", timeouts)
    got = await transport.send("GET", url, [], None, timeouts)
    assert (posted.status, posted.body, posted.header("retry-after")) == (201, b"{}", "7")
    assert got.header("content-length") == "2"
    assert got.header("x-missing") is None
    assert server.requests == [
        b"POST /api/v1/deposit HTTP/1.1\r\nhost: 127.0.0.1:%d\r\nX-Request-ID: r-2\r\n"
        b"content-length: 3\r\n\r\n[1]" % server.port,
        b"GET /api/v1/deposit HTTP/1.1\r\nhost: 127.0.0.1:%d\r\n\r\n" % server.port,
    ]
    assert server.connections == 1


async def test_a_keep_alive_connection_is_reused(
    serve: Callable[[Script], Awaitable[ScriptedServer]], transport: Http11Transport
) -> None:
    server = await serve(keep_answering())
    for _ in range(5):
        assert (await send(transport, server.url())).status_code == 201
    assert server.connections == 1


async def test_connection_close_is_honoured(
    serve: Callable[[Script], Awaitable[ScriptedServer]], transport: Http11Transport
) -> None:
    server = await serve(keep_answering(ok(extra=b"connection: close\r\n")))
    for _ in range(3):
        assert (await send(transport, server.url())).status_code == 201
    assert server.connections == 3


async def test_a_chunked_answer_is_decoded(
    serve: Callable[[Script], Awaitable[ScriptedServer]], transport: Http11Transport
) -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
        b'5\r\n{"cod\r\n7\r\ne":"0"}\r\n0\r\n\r\n'
    )
    server = await serve(keep_answering(chunked))
    response = await send(transport, server.url())
    assert response.content == b'{"code":"0"}'
    assert (await send(transport, server.url())).content == b'{"code":"0"}'
    assert server.connections == 1


async def test_an_answer_without_length_ends_with_the_connection(
    serve: Callable[[Script], Awaitable[ScriptedServer]], transport: Http11Transport
) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n{"code":"0"}')
        await writer.drain()

    server = await serve(script)
    response = await send(transport, server.url())
    assert response.content == b'{"code":"0"}'
    await send(transport, server.url())
    assert server.connections == 2  # never reused: its end was its close


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(b"", id="closed-without-answer"),
        pytest.param(b'HTTP/1.1 201 Created\r\ncontent-length: 50\r\n\r\n{"co', id="cut-body"),
        pytest.param(b"HTTP/1.1 201 Cre", id="cut-status-line"),
        pytest.param(b"SMTP ready\r\n\r\n", id="not-http"),
    ],
)
async def test_a_broken_answer_is_a_protocol_error_never_a_connect_error(
    serve: Callable[[Script], Awaitable[ScriptedServer]],
    transport: Http11Transport,
    answer: bytes,
) -> None:
    """The request reached the bank: the caller must treat the outcome as unknown."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer)
        await writer.drain()

    server = await serve(script)
    with pytest.raises(httpx.RemoteProtocolError):
        await send(transport, server.url())


async def test_an_oversized_answer_is_refused(
    serve: Callable[[Script], Awaitable[ScriptedServer]], transport: Http11Transport
) -> None:
    big = b"x" * (2 * 1024 * 1024)
    server = await serve(keep_answering(ok(big)))
    with pytest.raises(httpx.RemoteProtocolError, match="too large"):
        await send(transport, server.url())


async def test_a_slow_answer_is_a_read_timeout_and_the_connection_is_dropped(
    serve: Callable[[Script], Awaitable[ScriptedServer]],
) -> None:
    delays = [0.5, 0.0]

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            await asyncio.sleep(delays.pop(0))
            writer.write(ok())
            await writer.drain()

    server = await serve(script)
    pool = Http11Transport()
    try:
        slow = httpx.Request(
            "POST", server.url(), content=b"{}", extensions={"timeout": {"read": 0.1}}
        )
        with pytest.raises(httpx.ReadTimeout):
            await pool.handle_async_request(slow)
        # The late answer must not be read as the answer to the next request.
        assert (await send(pool, server.url())).status_code == 201
        assert server.connections == 2
    finally:
        await pool.aclose()


@pytest.mark.parametrize("same_packet", [True, False])
async def test_bytes_on_an_idle_connection_retire_it(
    serve: Callable[[Script], Awaitable[ScriptedServer]],
    transport: Http11Transport,
    same_packet: bool,
) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        if server.connections == 1:
            # The answer, then a stray second one nobody asked for.
            writer.write(ok(b'{"code":"0"}'))
            if not same_packet:
                await writer.drain()
                await asyncio.sleep(0.01)
            writer.write(ok(b'{"code":"STALE"}'))
        else:
            writer.write(ok(b'{"code":"fresh"}'))
        await writer.drain()
        await reader.read()

    server = await serve(script)
    assert (await send(transport, server.url())).content == b'{"code":"0"}'
    await asyncio.sleep(0.05)  # stray bytes, in the answer's packet or after it
    second = await send(transport, server.url())
    assert second.content == b'{"code":"fresh"}'  # from a new connection, not the stale answer
    assert server.connections == 2


async def test_a_connection_closed_by_the_server_while_idle_is_not_reused(
    serve: Callable[[Script], Awaitable[ScriptedServer]], transport: Http11Transport
) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(ok())
        await writer.drain()
        # ... and then the server's idle timeout closes it.

    server = await serve(script)
    await send(transport, server.url())
    await asyncio.sleep(0.05)
    assert (await send(transport, server.url())).status_code == 201
    assert server.connections == 2


async def test_an_expired_idle_connection_is_not_reused(
    serve: Callable[[Script], Awaitable[ScriptedServer]],
) -> None:
    server = await serve(keep_answering())
    pool = Http11Transport(keepalive_expiry=0.05)
    try:
        await send(pool, server.url())
        await asyncio.sleep(0.1)
        await send(pool, server.url())
        assert server.connections == 2
    finally:
        await pool.aclose()


async def test_an_unreachable_bank_is_a_connect_error(transport: Http11Transport) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens on it once the probe is closed
    with pytest.raises(httpx.ConnectError):
        await send(transport, f"http://127.0.0.1:{port}/api/v1/deposit")


async def test_the_pool_bounds_connections_and_a_wait_past_the_pool_timeout_is_not_sent(
    serve: Callable[[Script], Awaitable[ScriptedServer]],
) -> None:
    release = asyncio.Event()

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            await release.wait()
            writer.write(ok())
            await writer.drain()

    server = await serve(script)
    pool = Http11Transport(max_connections=1)
    try:
        first = asyncio.create_task(send(pool, server.url()))
        await asyncio.sleep(0.05)
        waiting = httpx.Request(
            "POST", server.url(), content=b"{}", extensions={"timeout": {"pool": 0.1}}
        )
        with pytest.raises(httpx.PoolTimeout):
            await pool.handle_async_request(waiting)
        release.set()
        assert (await first).status_code == 201
        assert server.connections == 1
    finally:
        await pool.aclose()


async def test_a_line_break_in_a_header_is_refused_before_anything_is_sent(
    serve: Callable[[Script], Awaitable[ScriptedServer]], transport: Http11Transport
) -> None:
    box: list[ScriptedServer] = []
    server = await serve(keep_answering(ok(), box))
    box.append(server)
    request = httpx.Request("POST", server.url(), content=b"{}", extensions=TIMEOUTS)
    request.headers["x-request-id"] = "a\r\nx-injected: 1"
    with pytest.raises(httpx.LocalProtocolError):
        await transport.handle_async_request(request)
    await asyncio.sleep(0.05)
    assert server.requests == []


async def test_https_is_not_served_here(transport: Http11Transport) -> None:
    with pytest.raises(httpx.UnsupportedProtocol):
        await send(transport, "https://bank.test/api/v1/deposit")


async def test_a_closed_transport_sends_nothing(
    serve: Callable[[Script], Awaitable[ScriptedServer]],
) -> None:
    server = await serve(keep_answering())
    pool = Http11Transport()
    await send(pool, server.url())
    await pool.aclose()
    with pytest.raises(httpx.ConnectError):
        await send(pool, server.url())
    assert server.connections == 1


async def test_a_cancelled_exchange_drops_its_connection_and_frees_its_slot(
    serve: Callable[[Script], Awaitable[ScriptedServer]],
) -> None:
    answers = [asyncio.Event(), None]

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            gate = answers.pop(0)
            if gate is not None:
                await gate.wait()  # never set: the first request gets no answer
            writer.write(ok())
            await writer.drain()

    server = await serve(script)
    pool = Http11Transport(max_connections=1)
    try:
        stuck = asyncio.create_task(send(pool, server.url()))
        await asyncio.sleep(0.05)
        stuck.cancel()  # the adapter's overall deadline does this
        with pytest.raises(asyncio.CancelledError):
            await stuck
        # The only slot is free again, and the half-done connection is not reused.
        assert (await send(pool, server.url())).status_code == 201
        assert server.connections == 2
    finally:
        await pool.aclose()
