"""load.lua under the real wrk, against a real HTTP server on loopback: the token it sends,
the statuses it expects, and the pause between requests."""

from __future__ import annotations

import os
import shutil
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import bench.wrk
from bench.wrk import FIRST_MERCHANT_TOKEN, SECOND_MERCHANT_TOKEN, WrkResult, run_wrk

LIMITED_TOKEN = FIRST_MERCHANT_TOKEN  # the fake gateway refuses this one with 429


class FakeGateway(BaseHTTPRequestHandler):
    """201 for every payment, 429 for the limited merchant; counts the tokens it was sent."""

    protocol_version = "HTTP/1.1"  # keep-alive, as wrk expects
    disable_nagle_algorithm = True  # headers and body leave at once, not 40 ms apart
    tokens: Counter[str]

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        token = self.headers["Authorization"].removeprefix("Bearer ")
        self.server.tokens[token] += 1  # type: ignore[attr-defined]
        self.send_response(429 if token == LIMITED_TOKEN else 201)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def do_GET(self) -> None:
        token = self.headers["Authorization"].removeprefix("Bearer ")
        self.server.tokens[token] += 1  # type: ignore[attr-defined]
        self.server.paths[self.path] += 1  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def wrk() -> str:
    found = shutil.which("wrk")
    if found is None:
        message = "wrk is not installed (apt-get install -y wrk)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)  # CI must run these tests, never skip them
        pytest.skip(message)
    return found


@pytest.fixture
def gateway(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[ThreadingHTTPServer]:
    monkeypatch.setattr(bench.wrk, "RESULTS_DIR", tmp_path)  # wrk.log goes here, not the repo
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeGateway)
    server.tokens = Counter()  # type: ignore[attr-defined]
    server.paths = Counter()  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def drive(wrk: str, server: ThreadingHTTPServer, **script: object) -> WrkResult:
    host, port = server.server_address[:2]
    return run_wrk(
        wrk,
        f"http://{host!s}:{port}/api/v1/payments",
        "payments",
        connections=2,
        seconds=1,
        threads=1,
        label="load.lua test",
        **script,  # type: ignore[arg-type]
    )


def test_a_flooder_sends_its_own_token_and_its_429s_are_expected(
    wrk: str, gateway: ThreadingHTTPServer
) -> None:
    result = drive(wrk, gateway, token=LIMITED_TOKEN, expect=("2xx", "429"))

    assert set(result.statuses) == {"429"}
    assert result.responses > 10
    assert result.unexpected == 0
    assert set(gateway.tokens) == {LIMITED_TOKEN}  # type: ignore[attr-defined]


def test_by_default_only_2xx_is_expected(wrk: str, gateway: ThreadingHTTPServer) -> None:
    refused = drive(wrk, gateway, token=LIMITED_TOKEN)
    served = drive(wrk, gateway, token=SECOND_MERCHANT_TOKEN)

    assert refused.unexpected == refused.statuses["429"] > 0
    assert (served.unexpected, set(served.statuses)) == (0, {"201"})


def test_a_delay_paces_every_connection(wrk: str, gateway: ThreadingHTTPServer) -> None:
    unpaced = drive(wrk, gateway, token=SECOND_MERCHANT_TOKEN)
    paced = drive(wrk, gateway, token=SECOND_MERCHANT_TOKEN, delay_ms=100)

    # Two connections, each waiting 100 ms before every request, for one second.
    assert 8 <= paced.responses <= 22
    assert unpaced.responses > 5 * paced.responses


def test_list_mode_gets_the_url_with_its_query_and_the_token(
    wrk: str, gateway: ThreadingHTTPServer
) -> None:
    host, port = gateway.server_address[:2]
    path = "/api/v1/payments?limit=100&starting_after=0196-abc"
    result = run_wrk(
        wrk,
        f"http://{host!s}:{port}{path}",
        "list",
        connections=2,
        seconds=1,
        threads=1,
        label="load.lua list test",
        token=SECOND_MERCHANT_TOKEN,
    )

    assert result.ok_2xx > 0
    assert result.statuses == {"200": result.ok_2xx}
    assert set(gateway.paths) == {path}  # type: ignore[attr-defined]
    assert set(gateway.tokens) == {SECOND_MERCHANT_TOKEN}  # type: ignore[attr-defined]
