"""The integrity verdict: payment rows against wrk's counts."""

from __future__ import annotations

import pytest

from bench.measurement import integrity_verdict


@pytest.mark.parametrize(
    ("rows", "verdict"),
    [
        (999, "LOST"),  # a 2xx answer without its row
        (1000, "ok"),  # every 2xx answer is a row; the in-flight requests never arrived
        (1004, "ok"),
        (1005, "exact"),  # the answered requests and all five cut off in flight
        (1007, "ok"),  # ... and two of the non-2xx answers still left a row
        (1008, "EXTRA"),  # more rows than requests: a duplicate
    ],
)
def test_the_verdict_compares_rows_with_the_requests_sent(rows: int, verdict: str) -> None:
    assert integrity_verdict(rows, answered=1000, unanswered=5, non_2xx=2) == verdict
