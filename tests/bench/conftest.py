"""Shared setup for the benchmark harness's tests.

The harness is the ``bench`` package at the repository root, run as ``python -m bench`` from
there; pytest's ``importlib`` import mode puts no directory on ``sys.path``, so the root is
appended here for ``import bench`` (appended, so that it shadows nothing installed).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.append(str(REPO_ROOT))

from bench.results import Report, load_report  # noqa: E402 - needs the path above
from tests.bench.stored_results import SOAK_RESULT  # noqa: E402


@pytest.fixture
def soak_report() -> Report:
    """The stored full run with the 120 s soak."""
    return load_report(SOAK_RESULT)
