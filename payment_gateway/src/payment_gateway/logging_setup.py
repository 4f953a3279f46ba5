"""Logging: structured JSON in production, readable console lines in development.

Every line passes a redaction guard first, so a card number or bearer token that slips into
a message by mistake is masked before it is written.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import structlog

from payment_gateway.audit import AUDIT_LOGGER
from payment_gateway.domain.card import luhn_valid

# The request id travels in this header (in and out, and on to the bank) and is bound to
# every log line of its request.
REQUEST_ID_HEADER = "X-Request-ID"

# The request's id for the code that passes it on (its events, the bank call's header): three
# reads a payment, each of which through structlog's get_contextvars() would copy and walk the
# whole context (4 us).
_REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)

_PAN_CANDIDATE = re.compile(r"(?<!\d)\d(?:[ -]?\d){11,18}(?!\d)")
_BEARER = re.compile(r"(?i)(bearer\s+)[^\s\"',]+")
# Ids (UUIDs: hex in 8-4-4-4-12 groups) are never card data, but a run of their digits across
# the hyphens can pass for a card number, Luhn-valid one time in ten: masking it would garble
# the id on the very line that names it.
_ID = re.compile(r"([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})")


def _mask_pan(match: re.Match[str]) -> str:
    digits = re.sub(r"[ -]", "", match.group())
    return f"[PAN ****{digits[-4:]}]" if luhn_valid(digits) else match.group()


def redact_text(text: str) -> str:
    # The odd parts of the split are the ids themselves, left as they are.
    parts = _ID.split(text)
    parts[::2] = [_PAN_CANDIDATE.sub(_mask_pan, part) for part in parts[::2]]
    return _BEARER.sub(r"\1[REDACTED]", "".join(parts))


def _redact(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {key: _redact(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_redact(item) for item in value]
    return value


def redact_card_data(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: mask PANs and bearer tokens in every field of the event."""
    for key, value in event_dict.items():
        event_dict[key] = _redact(value)
    return event_dict


def configure_logging(level: str = "INFO", log_format: str = "console") -> None:
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact_card_data,  # last before rendering: sees messages, fields and tracebacks
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Route uvicorn's own lines through the same formatter and guard.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers[:] = []
        uvicorn_logger.propagate = True
    # Per-request lines from the HTTP client and server, and driver chatter, are noise.
    for noisy in ("uvicorn.access", "httpx", "httpcore", "aiosqlite", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # The audit trail is written whatever the level of the rest.
    logging.getLogger(AUDIT_LOGGER).setLevel(logging.INFO)
    structlog.configure(
        # Drop lines below the level before any processing: most payments log nothing then.
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


@contextmanager
def request_context(request_id: str, client_address: str) -> Iterator[None]:
    """Within it, every log line carries the request's id and client address, and
    current_request_id() is the id."""
    token = _REQUEST_ID.set(request_id)
    structlog.contextvars.bind_contextvars(request_id=request_id, client_address=client_address)
    try:
        yield
    finally:
        structlog.contextvars.unbind_contextvars("request_id", "client_address")
        _REQUEST_ID.reset(token)


def current_request_id() -> str | None:
    return _REQUEST_ID.get()
