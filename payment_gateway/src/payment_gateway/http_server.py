"""uvicorn's httptools protocol with the bounds on slow and oversized clients that it lacks.

uvicorn itself offers, as flags: `--limit-concurrency` (connections and requests per worker,
beyond which a request is refused), `--timeout-keep-alive` (idle time between requests) and
`--no-server-header`. What neither httptools (llhttp) nor uvicorn bounds, this protocol adds:

* the size of a request's head (request line and header fields) and the number of header
  fields: beyond them the request is answered 431 and the connection closed. httptools keeps
  an unfinished header field in memory however long it grows, so the size is counted on the
  raw reads too, not only on finished fields;
* the time to receive the head, from its first byte: 408 and close;
* the time a started body may go without a byte: 408 and close;
* a connection that never sends a request is closed after the keep-alive timeout (uvicorn arms
  that timer only after a first response).

Refusals are RFC 9457 problem+json, like every other error of the gateway, and so is the 503 of
`--limit-concurrency` (uvicorn's own is plain text). Used as

    uvicorn payment_gateway.main:app --http payment_gateway.http_server:BoundedHttpToolsProtocol

with the flags listed in README.md (Server flags). The limits are read once, from
the environment (HttpServerSettings). Hot path: a request that arrives in one read, as nearly
all do, costs two additions per header field and a few attribute checks; a timer is armed only
when a read leaves a request unfinished.
"""

from __future__ import annotations

import asyncio
import http
import logging
from typing import ClassVar

import httptools
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from payment_gateway.api.problems import problem_response

log = logging.getLogger(__name__)


class HttpServerSettings(BaseSettings):
    """Bounds on what one client may make a worker hold, and for how long."""

    model_config = SettingsConfigDict(env_prefix="HTTP_", env_file=None, frozen=True)

    # Request line plus header fields. Browsers and SDKs send well under 8 KiB; nginx's default
    # large_client_header_buffers allows 32 KiB in 8 KiB lines.
    max_header_bytes: int = Field(default=16 * 1024, ge=1024)
    max_headers: int = Field(default=100, ge=10)
    # From a request's first byte to the end of its head.
    header_timeout_seconds: float = Field(default=10.0, gt=0)
    # Longest silence inside a body, once it has started. A card payment is a few hundred bytes.
    body_timeout_seconds: float = Field(default=15.0, gt=0)


# Where the protocol is between reads: between requests, in a head, or in a body.
_IDLE, _HEAD, _BODY = 0, 1, 2

# After a refusal, how long to keep reading (and discarding) before closing. Closing a socket
# with unread bytes in it makes the kernel send a reset, which can destroy the answer before
# the client has read it (nginx's lingering_close exists for the same reason).
LINGER_SECONDS = 2.0


class _Refusal(Exception):
    """Raised from a parser callback to stop parsing; data_received answers it."""

    def __init__(self, status: http.HTTPStatus, type_slug: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.type_slug = type_slug
        self.detail = detail


def _head_too_large(detail: str) -> _Refusal:
    return _Refusal(
        http.HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "request-header-fields-too-large", detail
    )


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    settings: ClassVar[HttpServerSettings] = HttpServerSettings()

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, object],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._max_header_bytes = self.settings.max_header_bytes
        self._max_headers = self.settings.max_headers
        self._phase = _IDLE
        # Bytes of the current head seen as request-line pieces and finished header fields...
        self._head_bytes = 0
        # ...and as whole reads that were all head (an unfinished field shows only here).
        self._head_read_bytes = 0
        self._head_began_in_this_read = False
        self._header_count = 0
        # The header deadline while in a head, the body-silence check while in a body.
        self._read_timer: asyncio.TimerHandle | None = None
        self._last_body_read = 0.0
        self._discarding = False  # refused: what still arrives is read and thrown away

    # ------------------------------------------------------------------ connection events

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # uvicorn arms the keep-alive timer only after a response: a connection that never sent
        # a byte would stay open for ever. The first byte cancels it (data_received).
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_read_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # uvicorn's data_received, plus the refusals and the read timers. Its own version
        # cannot be reused: it answers every callback error, ours included, with 400.
        if self._discarding:
            return
        self._unset_keepalive_if_required()
        self._head_began_in_this_read = False
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _Refusal):
                self._refuse(exc.__context__)
                return
            self._answer_invalid_request()
            return
        except httptools.HttpParserError:
            self._answer_invalid_request()
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        if self._phase == _HEAD:
            self._head_still_unfinished(len(data))
        elif self._phase == _BODY:
            self._body_still_unfinished()

    def _answer_invalid_request(self) -> None:
        message = "Invalid HTTP request received."
        self.logger.warning(message)
        self.send_400_response(message)

    # ------------------------------------------------------------------ parser callbacks

    def on_message_begin(self) -> None:
        self._phase = _HEAD
        self._head_bytes = self._head_read_bytes = self._header_count = 0
        self._head_began_in_this_read = True
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._head_bytes += len(url)
        if self._head_bytes > self._max_header_bytes:
            raise _head_too_large(f"the request line exceeds {self._max_header_bytes} bytes")
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        self._head_bytes += len(name) + len(value)
        if self._header_count > self._max_headers:
            raise _head_too_large(f"more than {self._max_headers} header fields")
        if self._head_bytes > self._max_header_bytes:
            raise _head_too_large(f"the header fields exceed {self._max_header_bytes} bytes")
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._cancel_read_timer()
        # uvicorn's own --limit-concurrency check, answered as problem+json rather than text.
        limit = self.limit_concurrency
        if limit is not None and (len(self.connections) >= limit or len(self.tasks) >= limit):
            raise _Refusal(
                http.HTTPStatus.SERVICE_UNAVAILABLE,
                "server-busy",
                "this server process has too many connections open; retry shortly",
            )
        self._phase = _BODY
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._phase = _IDLE
        self._cancel_read_timer()
        super().on_message_complete()

    # ------------------------------------------------------------------ reads left unfinished

    def _head_still_unfinished(self, read_size: int) -> None:
        # A read in which the head began may also hold the end of a previous (pipelined)
        # request; its finished fields were counted by the callbacks. Later reads are all head.
        if not self._head_began_in_this_read:
            self._head_read_bytes += read_size
            if self._head_read_bytes > self._max_header_bytes:
                self._refuse(_head_too_large(f"the head exceeds {self._max_header_bytes} bytes"))
                return
        if self._read_timer is None:
            self._read_timer = self.loop.call_later(
                self.settings.header_timeout_seconds, self._head_timed_out
            )

    def _head_timed_out(self) -> None:
        self._read_timer = None
        if self._phase == _HEAD:
            self._refuse(
                _Refusal(
                    http.HTTPStatus.REQUEST_TIMEOUT,
                    "request-timeout",
                    f"the request head did not arrive within "
                    f"{self.settings.header_timeout_seconds:g} s",
                )
            )

    def _body_still_unfinished(self) -> None:
        self._last_body_read = self.loop.time()
        if self._read_timer is None:
            self._read_timer = self.loop.call_later(
                self.settings.body_timeout_seconds, self._body_check
            )

    def _body_check(self) -> None:
        # One timer per body, re-armed for the remaining time, rather than one per read.
        self._read_timer = None
        if self._phase != _BODY:
            return
        timeout = self.settings.body_timeout_seconds
        now = self.loop.time()
        cycle = self.cycle
        if self.flow.read_paused or (cycle is not None and cycle.waiting_for_100_continue):
            # The server is not reading (the app has not taken the buffered body yet, or has
            # not asked for it): the client is not the one keeping the body waiting.
            self._last_body_read = now
        silence = now - self._last_body_read
        if silence < timeout:
            self._read_timer = self.loop.call_later(timeout - silence, self._body_check)
            return
        self._refuse(
            _Refusal(
                http.HTTPStatus.REQUEST_TIMEOUT,
                "request-timeout",
                f"the request body stalled for {timeout:g} s",
            )
        )

    def _cancel_read_timer(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    # ------------------------------------------------------------------ refusing

    def _refuse(self, refusal: _Refusal) -> None:
        """Answer the refusal if no response is owed on this connection first, then close."""
        self._cancel_read_timer()
        phase, self._phase = self._phase, _IDLE
        if self._discarding or self.transport.is_closing():
            return
        log.warning("closing a connection from %s: %s", self.client, refusal.detail)
        cycle = self.cycle
        if phase == _BODY:
            # The refused request's own cycle: answer unless the app already started to.
            if not cycle.response_started:
                self.transport.write(self._problem(refusal))
            # The app sees a disconnect and sends nothing more on this connection.
            cycle.disconnected = True
            cycle.message_event.set()
        elif cycle is not None and not cycle.response_complete:
            # A pipelined head, refused while the request ahead of it is still being answered:
            # answering now would come first. Let that answer finish, then uvicorn closes.
            self._discarding = True
            cycle.keep_alive = False
            return
        else:
            self.transport.write(self._problem(refusal))
        self._close_lingering()

    def _close_lingering(self) -> None:
        """Send FIN after the answer, discard what still arrives, close after LINGER_SECONDS."""
        self._discarding = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.flow.resume_reading()
        self._read_timer = self.loop.call_later(LINGER_SECONDS, self.transport.close)

    def _problem(self, refusal: _Refusal) -> bytes:
        response = problem_response(
            refusal.status, refusal.status.phrase, refusal.detail, type_slug=refusal.type_slug
        )
        headers = [
            *self.server_state.default_headers,
            *response.raw_headers,
            (b"connection", b"close"),
        ]
        lines = [STATUS_LINE[refusal.status]]
        for name, value in headers:
            lines += [name, b": ", value, b"\r\n"]
        lines += [b"\r\n", bytes(response.body)]
        return b"".join(lines)
