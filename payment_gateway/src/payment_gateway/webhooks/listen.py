"""`python -m payment_gateway webhooks listen`: a local endpoint that prints verified events.

Like `stripe listen`, for a developer wiring up webhooks: register
``http://127.0.0.1:9000/`` as an endpoint (development allows http and loopback), give this
command the endpoint's secret, and each event the gateway sends is verified with the Standard
Webhooks library and printed as one line. A request that does not verify gets ``400`` with the
reason, so the gateway's deliveries list shows it too. No database, no gateway settings.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TextIO

from payment_gateway.webhooks.verification import verify

MAX_BODY_BYTES = 1024 * 1024


def summary_line(received: datetime, webhook_id: str, event: Any) -> str:
    """time, webhook-id, event type, the object's id and status, tab-separated."""
    event = event if isinstance(event, dict) else {}
    data = event.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    obj = obj if isinstance(obj, dict) else {}
    fields = (
        received.isoformat(timespec="seconds").replace("+00:00", "Z"),
        webhook_id,
        event.get("type"),
        obj.get("id"),
        obj.get("status"),
    )
    return "\t".join("-" if value is None else str(value) for value in fields)


class _Handler(BaseHTTPRequestHandler):
    server: _ListenServer
    server_version = "payment-gateway-listen"
    sys_version = ""

    def do_POST(self) -> None:
        length = self.headers.get("content-length")
        if length is None or not length.isdigit():
            self._answer(HTTPStatus.LENGTH_REQUIRED, "a Content-Length is required")
            return
        if int(length) > MAX_BODY_BYTES:
            self._answer(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "the body is over 1 MiB")
            return
        body = self.rfile.read(int(length))
        headers = {name.lower(): value for name, value in self.headers.items()}
        checked = verify(body, headers, self.server.secrets)
        if not checked.ok:
            self.server.write(f"rejected: {checked.error}", error=True)
            self._answer(HTTPStatus.BAD_REQUEST, f"signature not verified: {checked.error}")
            return
        if self.server.as_json:
            # The body as it came, not re-serialised: exactly the bytes that were signed.
            self.server.write(body.decode("utf-8"))
        else:
            try:
                event = json.loads(body)
            except ValueError:
                event = None
            received = datetime.now(UTC)
            self.server.write(summary_line(received, headers.get("webhook-id", "-"), event))
        self._answer(HTTPStatus.NO_CONTENT, None)

    def _answer(self, status: HTTPStatus, reason: str | None) -> None:
        content = b"" if reason is None else reason.encode() + b"\n"
        self.send_response(status)
        if content:
            self.send_header("content-type", "text/plain; charset=utf-8")
        self.send_header("content-length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per event is the output; the access log would double it


class _ListenServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        secrets: Sequence[str],
        *,
        as_json: bool,
        out: TextIO,
        err: TextIO,
    ) -> None:
        super().__init__(address, _Handler)
        self.secrets = tuple(secrets)
        self.as_json = as_json
        self._out, self._err = out, err

    def write(self, line: str, *, error: bool = False) -> None:
        stream = self._err if error else self._out
        print(line, file=stream, flush=True)  # flushed: it is read through a pipe, live


def listen(
    host: str,
    port: int,
    secrets: Sequence[str],
    *,
    as_json: bool = False,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """Serve until interrupted; the exit status for the CLI."""
    server = _ListenServer((host, port), secrets, as_json=as_json, out=out, err=err)
    bound_host, bound_port = server.server_address[:2]
    print(
        f"listening on http://{bound_host!s}:{bound_port}/ for webhooks (Ctrl-C stops)",
        file=err,
        flush=True,
    )
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
