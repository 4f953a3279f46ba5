"""Without Chromium the browser tests skip on a developer's machine and fail under CI=true:
a real pytest run of one browser test, with CHROMIUM_PATH pointing at nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
A_BROWSER_TEST = (
    "tests/support/test_browser_testing.py"
    "::test_a_clean_page_passes_and_moderate_findings_do_not_fail"
)


def run_without_chromium(ci: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "CI": ci, "CHROMIUM_PATH": "/nonexistent/chromium"}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", A_BROWSER_TEST],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("ci", "exit_code", "outcome"), [("true", 1, "1 error"), ("", 0, "1 skipped")]
)
def test_a_browser_test_without_chromium(ci: str, exit_code: int, outcome: str) -> None:
    run = run_without_chromium(ci)
    assert run.returncode == exit_code, run.stdout + run.stderr
    assert outcome in run.stdout
    assert "Chromium not found at /nonexistent/chromium" in run.stdout
