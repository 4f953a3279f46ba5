"""Warnings, errors and tracebacks in the services' logs, for the report's notes."""

from __future__ import annotations

import re
from pathlib import Path

from bench.paths import REPO
from bench.results import LogMessage, LogSummary

LOG_LEVEL_PATTERN = re.compile(
    r"\[\s*(warning|error|critical)\s*\]"  # structlog console: "[error    ]"
    r"|^(WARNING|ERROR|CRITICAL):"  # uvicorn's default formatter
    r"|\"level\":\s*\"(warning|error|critical)\"",  # JSON logs
    re.IGNORECASE,
)
EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Disconnect|Warning|Exit)\b")
TIMESTAMP = re.compile(r"^\S*\d{4}-\d\d-\d\dT[\d:.]+Z?\s*")
COMMONEST_MESSAGES = 6
MESSAGE_LENGTH = 200


def scan_log(path: Path, *, root: Path = REPO) -> LogSummary:
    """Count warning/error lines and tracebacks in a service log, with the commonest messages.

    The summary names the log by its path relative to ``root``.
    """
    warnings = errors = tracebacks = 0
    messages: dict[str, int] = {}
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("Traceback"):
            tracebacks += 1
            continue
        level = LOG_LEVEL_PATTERN.search(line)
        if level:
            if next(g for g in level.groups() if g).lower() == "warning":
                warnings += 1
            else:
                errors += 1
        elif not EXCEPTION_LINE.match(line):
            continue
        message = TIMESTAMP.sub("", line).strip()[:MESSAGE_LENGTH]
        messages[message] = messages.get(message, 0) + 1
    top = sorted(messages.items(), key=lambda item: -item[1])[:COMMONEST_MESSAGES]
    return LogSummary(
        file=str(path.relative_to(root)),
        warning=warnings,
        error=errors,
        traceback=tracebacks,
        messages=tuple(LogMessage(message, count) for message, count in top),
    )
