"""The memory table: growth against the warm state, and the flags."""

from __future__ import annotations

import pytest

from bench.memory import RssSeries, memory_rows


def mib(*values: float) -> RssSeries:
    return RssSeries([round(v * 1024) for v in values])


def test_growth_is_the_end_against_the_warm_state() -> None:
    [row] = memory_rows({"bank": 100.0}, {"bank": mib(101, 120, 105)}, {}, {"bank": 130.0})

    assert (row.start_mib, row.end_mib, row.peak_mib, row.hwm_mib) == (101, 105, 120, 130)
    assert row.growth_pct == pytest.approx(5.0)
    assert row.flag == ""


def test_growth_over_ten_percent_and_a_large_worker_are_flagged() -> None:
    rows = memory_rows(
        {"gateway worker 1": 100.0, "gateway master": 30.0},
        {"gateway worker 1": mib(100, 151), "gateway master": mib(30, 31)},
        {"gateway worker 1": 155.0, "gateway master": 31.0},
        {},
    )

    flags = {row.process: row.flag for row in rows}
    assert flags == {"gateway worker 1": "grew > 10%, worker > 150 MiB", "gateway master": ""}


def test_a_process_without_samples_keeps_its_warm_state() -> None:
    [row] = memory_rows({"bare": 50.0}, {}, {}, {})

    assert (row.end_mib, row.growth_pct) == (50.0, 0.0)
