"""The benchmark's webhook receiver: a raw asyncio HTTP/1.1 server on 127.0.0.1 (uvloop).

Run as ``python -m bench.webhook_receiver PORT`` with the endpoint's signing secret in
``BENCH_WEBHOOK_SECRET``. Every ``POST`` is answered ``204`` at once, after its signature is
verified with the ``standardwebhooks`` library (every request, not a sample: an invalid one
is still answered 204, so that the gateway does not retry it, and counted); for each it keeps
the ``webhook-id``, the time the whole request had arrived (``time.time()``) and the event's
``created_at`` from the verified body. ``GET /stats`` answers the counts, ``GET /received``
all of it as JSON (bench/webhooks.py reads them). Nothing else: no framework, so the receiver
costs the shared cores as little as a receiver can.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, cast

import orjson
import uvloop
from standardwebhooks import Webhook, WebhookVerificationError

SECRET_VARIABLE = "BENCH_WEBHOOK_SECRET"  # noqa: S105 - the name of a variable
MAX_HEAD_BYTES = 16 * 1024
NO_CONTENT = b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n"
BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


@dataclass
class Received:
    """What the receiver has seen so far."""

    verifier: Webhook
    requests: int = 0
    invalid: int = 0  # requests whose signature (or headers, or body) did not verify
    # One entry per request, in arrival order: [webhook-id, receive time, event created_at].
    entries: list[tuple[str, float, str | None]] = field(default_factory=list)

    def record(self, headers: dict[str, str], body: bytes, at: float) -> None:
        self.requests += 1
        created_at: str | None = None
        try:
            payload: Any = self.verifier.verify(body, headers)
            created_at = str(payload["created_at"])
        except (WebhookVerificationError, ValueError, KeyError, TypeError):
            self.invalid += 1
        self.entries.append((headers.get("webhook-id", ""), at, created_at))

    def stats(self) -> bytes:
        unique = len({entry[0] for entry in self.entries})
        return orjson.dumps({"requests": self.requests, "unique": unique, "invalid": self.invalid})

    def dump(self) -> bytes:
        return orjson.dumps(
            {"requests": self.requests, "invalid": self.invalid, "entries": self.entries}
        )


class ReceiverProtocol(asyncio.Protocol):
    def __init__(self, received: Received) -> None:
        self._received = received
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast("asyncio.Transport", transport)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while self._transport is not None and self._handle_one():
            pass

    def _handle_one(self) -> bool:
        """Answer the first complete request in the buffer; False when none is complete."""
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > MAX_HEAD_BYTES:
                self._fail()
            return False
        head = bytes(self._buffer[:end]).decode("latin-1").split("\r\n")
        method, _, rest = head[0].partition(" ")
        path = rest.partition(" ")[0]
        headers: dict[str, str] = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            self._fail()
            return False
        if len(self._buffer) < end + 4 + length:
            return False
        body = bytes(self._buffer[end + 4 : end + 4 + length])
        del self._buffer[: end + 4 + length]
        self._answer(method, path, headers, body)
        return True

    def _answer(self, method: str, path: str, headers: dict[str, str], body: bytes) -> None:
        assert self._transport is not None
        if method == "POST":
            self._received.record(headers, body, time.time())
            self._transport.write(NO_CONTENT)
            return
        payload = self._received.dump() if path == "/received" else self._received.stats()
        self._transport.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
            + str(len(payload)).encode()
            + b"\r\n\r\n"
            + payload
        )

    def _fail(self) -> None:
        assert self._transport is not None
        self._transport.write(BAD_REQUEST)
        self._transport.close()
        self._transport = None


async def serve(port: int, secret: str) -> None:
    received = Received(Webhook(secret))
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: ReceiverProtocol(received), "127.0.0.1", port, backlog=1024
    )
    print(f"webhook receiver listening on 127.0.0.1:{port}", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str]) -> None:
    secret = os.environ[SECRET_VARIABLE]
    uvloop.run(serve(int(argv[0]), secret))


if __name__ == "__main__":
    main(sys.argv[1:])
