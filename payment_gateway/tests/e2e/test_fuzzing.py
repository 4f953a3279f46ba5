"""OpenAPI-driven fuzzing (schemathesis, every check) against the running gateway."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from .conftest import BIN, Stack

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[3]


def test_no_input_makes_the_gateway_fail_or_break_its_contract(stack: Stack) -> None:
    result = subprocess.run(
        [
            str(BIN / "schemathesis"),
            "run",
            f"{stack.gateway.url}/openapi.json",
            "--header",
            "Authorization: Bearer first_merchant_mock_token",
            "--checks",
            "all",
            "--max-examples",
            "40",
            "--max-time",
            "45",
            "--seed",
            "20261125",
            "--no-color",
        ],
        cwd=REPO_ROOT,  # picks up schemathesis.toml
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    # The gateway never logged an unhandled error while being fuzzed.
    assert "unhandled error" not in stack.gateway.log()
