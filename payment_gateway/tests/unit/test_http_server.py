"""BoundedHttpToolsProtocol fed bytes directly, on the asyncio loop (the e2e tests run uvloop).

The transport is a small recorder: what the protocol writes, and whether it half-closed or
closed. The application is a tiny ASGI app that reads the whole body and echoes its length.
"""

from __future__ import annotations

import asyncio

import pytest
from payment_gateway.http_server import BoundedHttpToolsProtocol, HttpServerSettings
from pydantic import ValidationError
from uvicorn._types import ASGIReceiveCallable, ASGISendCallable, Scope
from uvicorn.config import Config
from uvicorn.server import ServerState


async def body_length_app(
    scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
) -> None:
    assert scope["type"] == "http"
    length, more = 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        length += len(message.get("body", b""))  # type: ignore[arg-type]
        more = bool(message.get("more_body", False))
    body = str(length).encode()
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class RecordingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.eof_written = False
        self.closed = False

    def get_extra_info(self, name: str, default: object = None) -> object:
        return {"sockname": ("127.0.0.1", 8080), "peername": ("127.0.0.1", 50000)}.get(
            name, default
        )

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.eof_written, "wrote after the end of the answer"
        self.written += bytes(data)

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof_written = True

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def connect() -> tuple[BoundedHttpToolsProtocol, RecordingTransport]:
    config = Config(app=body_length_app, server_header=False, limit_concurrency=10)
    config.load()
    protocol = BoundedHttpToolsProtocol(config, ServerState(), {}, asyncio.get_running_loop())
    transport = RecordingTransport()
    protocol.connection_made(transport)
    return protocol, transport


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_large_body_in_the_same_read_as_a_small_head_is_not_taken_for_a_head() -> None:
    protocol, transport = connect()
    body = b"x" * 60_000  # far above the head limit, in one read with the head
    protocol.data_received(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 60000\r\n\r\n" + body)
    await settle()
    assert transport.written.startswith(b"HTTP/1.1 200 ")
    assert transport.written.endswith(b"\r\n\r\n60000")
    assert not transport.eof_written


async def test_a_head_split_over_reads_is_refused_once_the_reads_exceed_the_limit() -> None:
    protocol, transport = connect()
    protocol.data_received(b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: ")
    protocol.data_received(b"a" * 10_000)
    assert transport.written == b""  # 10 kB of head so far: within 16 KiB
    protocol.data_received(b"a" * 10_000)
    assert transport.written.startswith(b"HTTP/1.1 431 ")
    assert b"application/problem+json" in transport.written
    assert transport.eof_written  # answered, then half-closed while lingering
    protocol.data_received(b"a" * 10_000)  # discarded, not parsed, not answered again
    assert transport.written.count(b"HTTP/1.1") == 1
    protocol.connection_lost(None)


async def test_a_refused_pipelined_head_lets_the_answer_ahead_of_it_finish_then_closes() -> None:
    protocol, transport = connect()
    # A request whose body is still coming, then (pipelined, in the same read as the end of
    # that body) the head of the next one with too many fields.
    protocol.data_received(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nab")
    protocol.data_received(b"c" + b"GET / HTTP/1.1\r\n" + b"X-H: 1\r\n" * 102)
    assert transport.written == b""  # nothing may come before the first answer
    await settle()
    # The first request is answered whole, and then the connection is closed.
    assert transport.written.startswith(b"HTTP/1.1 200 ")
    assert transport.written.endswith(b"\r\n\r\n3")
    assert b"connection: close" in transport.written
    assert transport.closed
    protocol.connection_lost(None)


def test_the_limits_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_MAX_HEADER_BYTES", "8192")
    monkeypatch.setenv("HTTP_BODY_TIMEOUT_SECONDS", "2.5")
    settings = HttpServerSettings()
    assert settings.max_header_bytes == 8192
    assert settings.body_timeout_seconds == 2.5
    assert settings.max_headers == 100


def test_nonsense_limits_stop_the_server_from_starting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_HEADER_TIMEOUT_SECONDS", "0")
    with pytest.raises(ValidationError, match="header_timeout_seconds"):
        HttpServerSettings()
