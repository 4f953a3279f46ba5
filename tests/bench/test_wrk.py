"""The result line load.lua prints at the end of a wrk run."""

from __future__ import annotations

import json

import pytest

from bench.results import Latency
from bench.wrk import parse_wrk_output


def wrk_output(statuses: dict[str, int], *, sent: int, responses: int, unexpected: int = 0) -> str:
    result = {
        "duration_us": 3_002_500,
        "responses": responses,
        "bytes": 123_456,
        "errors": {"connect": 0, "read": 1, "write": 0, "status": 7, "timeout": 2},
        "sent": sent,
        "unexpected": unexpected,
        "statuses": statuses,
        "latency_us": {
            "min": 900,
            "max": 80_000,
            "mean": 12_500.5,
            "stdev": 3_000,
            "percentiles": {"50": 11_000, "75": 14_000, "90": 18_000, "99": 25_000, "99.9": 31_000},
        },
    }
    return "Running 3s test @ http://127.0.0.1:1/\n  64 connections\nWRK_JSON " + json.dumps(result)


def test_the_result_line_is_read_in_milliseconds_and_seconds() -> None:
    result = parse_wrk_output(
        wrk_output({"201": 3000, "503": 7}, sent=3015, responses=3007, unexpected=7)
    )

    assert result is not None
    assert result.duration_s == pytest.approx(3.0025)
    assert result.latency_ms == Latency(
        p50=11.0, p75=14.0, p90=18.0, p99=25.0, p99_9=31.0, mean=12.5005, max=80.0
    )
    # wrk's "status" errors are the non-2xx answers, counted per code by the script instead
    assert result.socket_errors == {"connect": 0, "read": 1, "write": 0, "timeout": 2}
    assert (result.ok_2xx, result.non_2xx, result.unanswered) == (3000, 7, 8)
    assert result.unexpected == 7


def test_answers_per_second_of_one_status() -> None:
    result = parse_wrk_output(
        wrk_output({"201": 600, "429": 30_020}, sent=30_650, responses=30_620)
    )

    assert result is not None
    assert result.per_second("201") == pytest.approx(600 / 3.0025)
    assert result.per_second("429") == pytest.approx(30_020 / 3.0025)
    assert result.per_second("500") == 0
    assert result.unexpected == 0


def test_output_without_the_result_line_gives_nothing() -> None:
    assert parse_wrk_output("unable to connect to 127.0.0.1:1 Connection refused\n") is None
