"""The audit trail (PCI DSS 10.2): who did what, when, from which address.

One logger, `audit`, always at INFO whatever LOG_LEVEL is, so operators can route it apart
(e.g. `logger == "audit"` in the JSON lines). Its events never carry card data: ids, names,
key prefixes and counts only. "When" is the line's timestamp; "who" is the merchant id for
the API and `operator:<user>@<host>` for the CLI; "from where" is the client address the
request-context middleware binds (the CLI binds the host).

Failed authentications are throttled per client address, so that a flood of bad keys cannot
flood the log: at most `FAILED_AUTH_LINES_PER_MINUTE` lines a minute each, the next line
saying how many were left out.
"""

from __future__ import annotations

import getpass
import socket
import time

import structlog

AUDIT_LOGGER = "audit"
FAILED_AUTH_LINES_PER_MINUTE = 10

log = structlog.get_logger(AUDIT_LOGGER)


def record(action: str, **details: object) -> None:
    """One audit event: ``action`` and what it concerns (never card data)."""
    log.info(action, **details)


def operator() -> str:
    """Who runs a CLI command: the operating-system user on this host."""
    return f"operator:{getpass.getuser()}@{socket.gethostname()}"


class FailedAuthenticationLog:
    """Records failed authentications, at most so many lines a minute per client address."""

    def __init__(self, per_minute: int = FAILED_AUTH_LINES_PER_MINUTE) -> None:
        self._per_minute = per_minute
        self._windows: dict[str, tuple[float, int]] = {}  # address -> (window start, count)

    def record(self, reason: str) -> None:
        address = structlog.contextvars.get_contextvars().get("client_address", "unknown")
        now = time.monotonic()
        start, count = self._windows.get(address, (now, 0))
        if now - start >= 60:
            suppressed = max(count - self._per_minute, 0)
            start, count = now, 0
        else:
            suppressed = 0
        count += 1
        if len(self._windows) > 10_000:  # bounded memory under a spray of addresses
            self._windows.clear()
        self._windows[address] = (start, count)
        if count <= self._per_minute:
            record("authentication_failed", reason=reason, suppressed_before=suppressed)
