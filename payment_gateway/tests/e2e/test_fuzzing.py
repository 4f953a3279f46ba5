"""OpenAPI-driven fuzzing (schemathesis, every check) against the running gateway."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import BIN, Stack, running_stack

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # The fuzzer sends many requests without an API key from one address; under the default
    # per-address limit (tested in tests/integration/test_rate_limits.py) they would
    # draw 429 instead of the 401 its missing-header check is there to see.
    with running_stack(
        tmp_path_factory.mktemp("stack"), RATE_LIMIT_UNAUTHENTICATED_PER_SECOND="100000"
    ) as services:
        yield services


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
