"""Slow and oversized clients against a real gateway process, over raw sockets.

The gateway runs with the production server flags (conftest.SERVER_FLAGS) and, so that the
module stays fast, short timeouts and a small connection limit. It runs as one process, so the
process the test starts is the one whose memory is read.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import Service, free_port, gateway_env, start_service

HEADER_TIMEOUT = 1.5
BODY_TIMEOUT = 1.5
KEEP_ALIVE_TIMEOUT = 1
CONNECTION_LIMIT = 8
# Time allowed on top of a timeout for the timer, the scheduler and this busy machine.
SLACK = 1.5
MERCHANT_AUTH = b"Authorization: Bearer first_merchant_mock_token\r\n"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    workdir = tmp_path_factory.mktemp("slow-clients")
    # No bank: nothing here gets as far as a bank call.
    env = gateway_env(workdir, f"http://127.0.0.1:{free_port()}")
    env |= {
        "HTTP_HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT),
        "HTTP_BODY_TIMEOUT_SECONDS": str(BODY_TIMEOUT),
    }
    service = start_service(
        "gateway",
        "payment_gateway.main:app",
        free_port(),
        workdir,
        env,
        "--timeout-keep-alive",
        str(KEEP_ALIVE_TIMEOUT),
        "--limit-concurrency",
        str(CONNECTION_LIMIT),
    )
    yield service
    service.stop()


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    closed: bool  # the server closed the connection after it
    seconds: float  # from the start of the wait to the end of the answer

    def problem(self) -> dict[str, object]:
        assert self.headers["content-type"] == "application/problem+json"
        document: dict[str, object] = json.loads(self.body)
        assert document["status"] == self.status
        return document


def connect(service: Service) -> socket.socket:
    host, port = service.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def read_until_closed(sock: socket.socket, timeout: float) -> tuple[bytes, bool]:
    """Everything the server sends before it closes; closed is False if it stays open."""
    sock.settimeout(timeout)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except TimeoutError:
        return received, False
    except ConnectionResetError:
        pass
    return received, True


def read_answer(sock: socket.socket, timeout: float = 10) -> Answer:
    """One response, then whether the connection is closed right after it."""
    started = time.monotonic()
    sock.settimeout(timeout)
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(65536)
        assert chunk, f"closed without an answer after {received!r}"
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {
        name.strip().lower(): value.strip()
        for name, value in (line.split(":", 1) for line in lines)
    }
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "closed in the middle of the answer"
        body += chunk
    seconds = time.monotonic() - started
    rest, closed = (
        read_until_closed(sock, 1.0)
        if headers.get("connection") == "close"
        else (
            b"",
            False,
        )
    )
    assert not rest, f"bytes after the answer: {rest[:100]!r}"
    return Answer(int(status_line.split()[1]), headers, body[:length], closed, seconds)


def send_in_background(sock: socket.socket, data_chunks: Iterator[bytes]) -> threading.Thread:
    """Send until the chunks run out or the server stops reading; the reply is read meanwhile."""

    def send() -> None:
        try:
            for chunk in data_chunks:
                sock.sendall(chunk)
        except OSError:
            pass  # the server closed: what it answered is what the test reads

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def wait_for_free_slots(service: Service) -> None:
    """Earlier tests' connections may still be closing on the server's side."""
    deadline = time.monotonic() + 5
    while True:
        with connect(service) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            if read_answer(sock).status == 200 or time.monotonic() > deadline:
                return
        time.sleep(0.1)


# --------------------------------------------------------------------------- size and count


def test_a_2_mb_header_is_refused_with_431_and_the_connection_closed(gateway: Service) -> None:
    with connect(gateway) as sock:
        request = b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 2_000_000 + b"\r\n\r\n"
        sender = send_in_background(sock, iter([request]))
        answer = read_answer(sock)
        sender.join(timeout=10)
    assert answer.status == 431
    assert "bytes" in str(answer.problem()["detail"])
    assert answer.closed


def test_20000_headers_are_refused_with_431_on_the_count(gateway: Service) -> None:
    headers = b"".join(b"X-H-%d: 1\r\n" % n for n in range(20_000))
    with connect(gateway) as sock:
        sender = send_in_background(
            sock, iter([b"GET /healthz HTTP/1.1\r\nHost: t\r\n" + headers + b"\r\n"])
        )
        answer = read_answer(sock)
        sender.join(timeout=10)
    assert answer.status == 431
    # Refused on the count, not the size: 101 short fields are far below the byte limit.
    assert "more than 100 header fields" in str(answer.problem()["detail"])
    assert answer.closed


def test_a_request_just_under_the_limits_is_served(gateway: Service) -> None:
    """The limits refuse abuse, not a large but ordinary request (guards against a false 431)."""
    headers = b"".join(b"X-H-%d: %s\r\n" % (n, b"v" * 100) for n in range(90))
    with connect(gateway) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n" + headers + b"\r\n")
        assert read_answer(sock).status == 200


def test_an_unterminated_64_mib_header_is_refused_early_without_growing_the_worker(
    gateway: Service,
) -> None:
    before = rss_kib(gateway.process.pid)
    total = 64 * 1024 * 1024
    chunk = b"a" * 65536
    with connect(gateway) as sock:
        chunks = iter([b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: ", *[chunk] * (total // 65536)])
        sender = send_in_background(sock, chunks)
        answer = read_answer(sock)
        still_sending = sender.is_alive()
        sender.join(timeout=30)
    after = rss_kib(gateway.process.pid)
    assert answer.status == 431
    # Answered while the client was still sending: the server did not wait for the header.
    assert still_sending
    assert after - before < 4 * 1024, f"the worker grew by {after - before} KiB"


# --------------------------------------------------------------------------- time


def test_a_connection_that_sends_nothing_is_closed_after_the_keep_alive_timeout(
    gateway: Service,
) -> None:
    with connect(gateway) as sock:
        started = time.monotonic()
        received, closed = read_until_closed(sock, KEEP_ALIVE_TIMEOUT + SLACK)
    assert closed
    assert received == b""
    assert time.monotonic() - started >= KEEP_ALIVE_TIMEOUT - 0.1


def test_an_idle_keep_alive_connection_is_closed_after_the_keep_alive_timeout(
    gateway: Service,
) -> None:
    with connect(gateway) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        assert read_answer(sock).status == 200
        started = time.monotonic()
        received, closed = read_until_closed(sock, KEEP_ALIVE_TIMEOUT + SLACK)
    assert closed
    assert received == b""
    assert time.monotonic() - started >= KEEP_ALIVE_TIMEOUT - 0.1


def test_a_header_dripped_byte_by_byte_is_answered_408_after_the_header_timeout(
    gateway: Service,
) -> None:
    drip_interval = 0.5
    header = b"X-Slow: " + b"a" * 100
    with connect(gateway) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")
        sock.settimeout(drip_interval)
        dripped = 0
        while True:
            try:
                if sock.recv(1, socket.MSG_PEEK):
                    break  # the server is answering
            except TimeoutError:
                sock.sendall(header[dripped : dripped + 1])
                dripped += 1
            assert time.monotonic() - started < HEADER_TIMEOUT + SLACK, "still open"
        answer = read_answer(sock)
    elapsed = time.monotonic() - started
    assert answer.status == 408
    assert "request head" in str(answer.problem()["detail"])
    assert answer.closed
    assert elapsed >= HEADER_TIMEOUT - 0.1
    assert dripped >= 2  # it was still dripping when the head timed out


def test_a_stalled_body_is_answered_408_after_the_body_timeout(gateway: Service) -> None:
    with connect(gateway) as sock:
        sock.sendall(
            b"POST /api/v1/payments HTTP/1.1\r\nHost: t\r\n"
            + MERCHANT_AUTH
            + b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
            + b'{"amount":'
        )
        started = time.monotonic()
        answer = read_answer(sock, timeout=BODY_TIMEOUT + SLACK)
    assert answer.status == 408
    assert "body stalled" in str(answer.problem()["detail"])
    assert answer.closed
    assert time.monotonic() - started >= BODY_TIMEOUT - 0.1


def test_a_slow_but_moving_body_and_head_are_served(gateway: Service) -> None:
    """Both timeouts measure silence or a whole head, not a fast-client budget per read."""
    body = b'{"amount": "not a number"}'.ljust(300)
    pause = BODY_TIMEOUT * 0.6  # each silence under the timeout, the whole body over it
    with connect(gateway) as sock:
        sock.sendall(b"POST /api/v1/payments HTTP/1.1\r\nHost: t\r\n")
        time.sleep(HEADER_TIMEOUT * 0.5)
        sock.sendall(
            MERCHANT_AUTH
            + b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
        )
        for part in (body[:100], body[100:200], body[200:]):
            time.sleep(pause)
            sock.sendall(part)
        answer = read_answer(sock)
    # The application read the whole body and judged it.
    assert answer.status == 422
    assert answer.problem()["errors"]


# --------------------------------------------------------------------------- headers, limits


def test_responses_carry_no_server_header(gateway: Service) -> None:
    with connect(gateway) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        answer = read_answer(sock)
    assert answer.status == 200
    assert "server" not in answer.headers
    assert "date" in answer.headers  # the other default header is still sent


def test_beyond_the_connection_limit_requests_get_503(gateway: Service) -> None:
    wait_for_free_slots(gateway)
    idle = [connect(gateway) for _ in range(CONNECTION_LIMIT - 1)]
    try:
        with connect(gateway) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            answer = read_answer(sock)
    finally:
        for sock in idle:
            sock.close()
    assert answer.status == 503
    assert answer.problem()["type"] == "urn:payment-gateway:problem:server-busy"
    assert answer.closed
    wait_for_free_slots(gateway)
    with connect(gateway) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        assert read_answer(sock).status == 200
