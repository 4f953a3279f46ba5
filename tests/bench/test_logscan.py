"""The service logs' warnings, errors and tracebacks, for the report's notes."""

from __future__ import annotations

from pathlib import Path

from bench.logscan import scan_log
from bench.results import LogMessage

LOG = """\
INFO:     Started server process [123]
2026-11-25T22:28:58.123Z [warning  ] Name 'pk_cards' ignored for PRIMARY key. [asyncmy]
2026-11-25T22:28:59.456Z [warning  ] Name 'pk_cards' ignored for PRIMARY key. [asyncmy]
ERROR:    Exception in ASGI application
{"level": "error", "event": "bank timed out"}
Traceback (most recent call last):
  File "x.py", line 1, in <module>
ValueError: boom
an ordinary line
"""


def test_levels_tracebacks_and_the_commonest_messages_are_counted(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "gateway.log"
    path.parent.mkdir()
    path.write_text(LOG)

    summary = scan_log(path, root=tmp_path)

    assert summary.file == "logs/gateway.log"
    assert (summary.warning, summary.error, summary.traceback) == (2, 2, 1)
    assert summary.messages[0] == LogMessage(
        "[warning  ] Name 'pk_cards' ignored for PRIMARY key. [asyncmy]", 2
    )
    assert {m.message for m in summary.messages[1:]} == {
        "ERROR:    Exception in ASGI application",
        '{"level": "error", "event": "bank timed out"}',
        "ValueError: boom",
    }


def test_a_clean_log_has_nothing_to_report(tmp_path: Path) -> None:
    path = tmp_path / "bank.log"
    path.write_text("INFO:     Application startup complete.\n")

    summary = scan_log(path, root=tmp_path)

    assert (summary.warning, summary.error, summary.traceback, summary.messages) == (0, 0, 0, ())
