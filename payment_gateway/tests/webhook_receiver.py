"""A real webhook receiver for tests: an HTTP server on 127.0.0.1 that verifies and records.

It runs uvicorn in a thread of its own, so it answers whatever the test's event loop is doing,
and serves sync and async tests alike. Every request is verified with the Standard Webhooks
library against the receiver's current secrets and recorded. Usage::

    with WebhookReceiver(secrets=[secret]) as receiver:      # started on a free port
        register(receiver.url)                               # http://127.0.0.1:<port>/webhooks
        receiver.answer_next(Answer(500), Answer(503, retry_after="2"))  # the next two requests
        receiver.answer_event("evt_1", Answer(410))          # by webhook-id, before the queue
        receiver.default = Answer(200)                       # the phase: every other request
        receiver.default = Answer(204, delay=30)             # a receiver slower than a timeout
        receiver.go_down(for_seconds=2)                      # down, back on the same port
        got = await receiver.wait_for(3)                     # (or receiver.wait_for_sync(3))
        assert all(r.verified for r in got)
        receiver.secrets = [new_secret, secret]              # a rotation; r.matched tells which

``stop()`` and ``start()`` do by hand what ``go_down`` does on a timer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import uvicorn
from payment_gateway.webhooks.verification import verify
from uvicorn._types import ASGIReceiveCallable, ASGISendCallable, Scope

PATH = "/webhooks"


@dataclass(frozen=True, slots=True)
class Answer:
    """How to answer one request: a status, a body, a Retry-After, after a delay."""

    status: int = 204
    body: bytes = b""
    retry_after: str | None = None  # seconds or an HTTP-date, sent as given
    delay: float = 0.0  # seconds to wait before answering (longer than a timeout = a timeout)
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names; a repeated header keeps its last value
    body: bytes
    verified: bool
    matched: tuple[str, ...]  # the secrets whose signature verified
    error: str | None  # why it did not verify
    received_at: float  # time.time() when the body had arrived
    answer: Answer

    @property
    def event_id(self) -> str | None:
        return self.headers.get("webhook-id")

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class WebhookReceiver:
    secrets: list[str] = field(default_factory=list)
    default: Answer = field(default_factory=Answer)
    host: str = "127.0.0.1"
    port: int = 0  # 0: a free port, chosen at the first start and kept across restarts
    tls: tuple[str, str] | None = None  # (certificate file, key file): https instead of http

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: list[ReceivedRequest] = []
        self._queue: deque[Answer] = deque()
        self._by_event: dict[str, deque[Answer]] = {}
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._timer: threading.Timer | None = None

    # -- what the tests see

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self.host}:{self.port}{PATH}"

    @property
    def requests(self) -> list[ReceivedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def running(self) -> bool:
        return self._server is not None

    def verified_event_ids(self) -> list[str]:
        return [r.event_id for r in self.requests if r.verified and r.event_id is not None]

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()

    def answer_next(self, *answers: Answer) -> None:
        """Answers for the next requests, in order, whatever event they carry."""
        with self._lock:
            self._queue.extend(answers)

    def answer_event(self, event_id: str, *answers: Answer) -> None:
        """Answers for the next requests that carry this webhook-id (first in line)."""
        with self._lock:
            self._by_event.setdefault(event_id, deque()).extend(answers)

    async def wait_for(self, count: int, *, timeout: float = 10.0) -> list[ReceivedRequest]:
        """The requests once there are at least `count` of them; AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        while len(got := self.requests) < count:
            assert time.monotonic() < deadline, f"{len(got)} of {count} requests came"
            await asyncio.sleep(0.01)
        return got

    def wait_for_sync(self, count: int, *, timeout: float = 10.0) -> list[ReceivedRequest]:
        deadline = time.monotonic() + timeout
        while len(got := self.requests) < count:
            assert time.monotonic() < deadline, f"{len(got)} of {count} requests came"
            time.sleep(0.01)
        return got

    # -- up and down

    def start(self) -> None:
        assert self._server is None, "already running"
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # Back on the same port at once after a stop, even with connections in TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._app,
            log_level="warning",
            lifespan="off",
            interface="asgi3",  # a bound method: uvicorn would guess ASGI 2
            timeout_graceful_shutdown=1,  # a slow answer in progress does not hold up a stop
            access_log=False,
            ssl_certfile=self.tls[0] if self.tls else None,
            ssl_keyfile=self.tls[1] if self.tls else None,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                sock.close()
                raise RuntimeError("the webhook receiver did not start")
            time.sleep(0.01)
        self._server, self._thread = server, thread

    def stop(self) -> None:
        """Down: connections are refused until start() (same port)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._stop_server()

    def go_down(self, *, for_seconds: float) -> None:
        """Down now, and back on the same port after `for_seconds`, without blocking."""
        self._stop_server()
        self._timer = threading.Timer(for_seconds, self.start)
        self._timer.daemon = True
        self._timer.start()

    def _stop_server(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None and thread is not None:
            server.should_exit = True
            thread.join(timeout=10)

    def __enter__(self) -> WebhookReceiver:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- the ASGI app

    def _next_answer(self, event_id: str | None) -> Answer:
        with self._lock:
            for_event = self._by_event.get(event_id or "")
            if for_event:
                return for_event.popleft()
            return self._queue.popleft() if self._queue else self.default

    async def _app(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] != "http":
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away mid-body: nothing was received
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        checked = verify(body, headers, list(self.secrets))
        answer = self._next_answer(headers.get("webhook-id"))
        record = ReceivedRequest(
            method=scope["method"],
            path=scope["path"],
            headers=headers,
            body=body,
            verified=checked.ok,
            matched=checked.matched,
            error=checked.error,
            received_at=time.time(),
            answer=answer,
        )
        with self._lock:
            self._requests.append(record)
        if answer.delay:
            await asyncio.sleep(answer.delay)
        response_headers = [(b"content-length", str(len(answer.body)).encode())]
        if answer.retry_after is not None:
            response_headers.append((b"retry-after", answer.retry_after.encode()))
        response_headers += [(k.encode(), v.encode()) for k, v in answer.headers]
        with contextlib.suppress(OSError):  # the sender may have given up and gone
            await send(
                {
                    "type": "http.response.start",
                    "status": answer.status,
                    "headers": response_headers,
                }
            )
            await send({"type": "http.response.body", "body": answer.body, "more_body": False})
