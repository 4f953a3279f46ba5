"""The report built from measurements: targets, ratios and the files it is written to."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from pathlib import Path

import pytest

from bench.report import (
    against_the_bare_endpoint,
    build_report,
    check_fair_use_targets,
    check_targets,
    write_results,
)
from bench.results import WITHOUT_WEBHOOKS, Report, load_report
from tests.bench.fair_use_sample import fair_use_run, with_fair_use
from tests.bench.stored_results import STORED_JSON


def rebuild(report: Report) -> Report:
    return build_report(
        report.options,
        report.machine,
        report.runs,
        report.limits,
        report.integrity,
        report.memory,
        report.memory_kind,
        report.logs,
        report.environment,
        datetime.fromisoformat(report.date),
        report.elapsed_s,
        report.fair_use.runs if report.fair_use else None,
        report.listing,
        report.galera,
        report.webhooks,
    )


@pytest.mark.parametrize("path", STORED_JSON, ids=lambda path: path.name)
def test_the_measurements_of_a_stored_result_give_its_targets_and_ratios(path: Path) -> None:
    stored = load_report(path)

    assert rebuild(stored) == stored


def test_a_slow_gateway_misses_the_throughput_and_latency_targets(soak_report: Report) -> None:
    headline = soak_report.runs[1]
    slow = dataclasses.replace(
        headline,
        per_second=900.0,
        latency_ms=dataclasses.replace(headline.latency_ms, p99=151.0),
    )
    runs = (soak_report.runs[0], slow, *soak_report.runs[2:])
    assert soak_report.integrity is not None

    targets = check_targets(
        runs,
        soak_report.limits,
        soak_report.integrity,
        soak_report.memory,
        soak_report.memory_kind,
    )

    missed = {t.target: t.value for t in targets if not t.met}
    assert missed["payments/s at c64 >= 1,000"] == "900"
    assert missed["p99 at c64 < 150 ms"] == "151.0 ms"


def test_memory_growth_over_the_soak_is_a_target(soak_report: Report) -> None:
    grown = dataclasses.replace(soak_report.memory[4], growth_pct=12.5)
    memory = (*soak_report.memory[:4], grown)
    assert soak_report.integrity is not None

    targets = check_targets(
        soak_report.runs, soak_report.limits, soak_report.integrity, memory, "soak"
    )
    without_soak = check_targets(
        soak_report.runs, soak_report.limits, soak_report.integrity, memory, "runs"
    )

    growth = next(t for t in targets if t.target.startswith("RSS growth"))
    assert (growth.value, growth.met) == ("+12.5 % (bank)", False)
    assert not any(t.target.startswith("RSS growth") for t in without_soak)


def test_a_full_run_replaces_latest_and_keeps_a_timestamped_copy(
    soak_report: Report, tmp_path: Path
) -> None:
    written = write_results(soak_report, "# markdown\n", tmp_path)

    assert sorted(p.name for p in written) == [
        "20261125T222858Z.json",
        "20261125T222858Z.md",
        "latest.json",
        "latest.md",
    ]
    assert load_report(tmp_path / "20261125T222858Z.json") == soak_report
    assert (tmp_path / "latest.md").read_text() == "# markdown\n"


def test_a_quick_run_only_replaces_latest_quick(soak_report: Report, tmp_path: Path) -> None:
    quick = dataclasses.replace(soak_report, quick=True)

    written = write_results(quick, "# quick\n", tmp_path)

    assert sorted(p.name for p in written) == ["latest-quick.json", "latest-quick.md"]
    assert load_report(tmp_path / "latest-quick.json") == quick


def test_the_fair_use_targets_are_rebuilt_from_its_runs(soak_report: Report) -> None:
    report = with_fair_use(soak_report, fair_use_run("memory"), fair_use_run("redis"))

    assert rebuild(report) == report


@pytest.mark.parametrize(("flooded_p99", "met"), [(59.9, True), (60.0, True), (60.1, False)])
def test_the_other_merchants_p99_may_at_most_double_under_the_flood(
    flooded_p99: float, met: bool
) -> None:
    [target] = check_fair_use_targets([fair_use_run(quiet_p99=30.0, flooded_p99=flooded_p99)])

    assert target.target == "other merchant's p99 under flood <= 2x quiet (memory counters)"
    assert target.met is met


def test_a_fair_use_only_run_has_no_headline_targets_and_its_own_files(
    soak_report: Report, tmp_path: Path
) -> None:
    options = dataclasses.replace(soak_report.options, only="fair-use")
    report = build_report(
        options,
        soak_report.machine,
        [],
        [],
        None,
        [],
        "runs",
        soak_report.logs,
        soak_report.environment,
        datetime.fromisoformat(soak_report.date),
        95.0,
        [fair_use_run()],
    )

    written = write_results(report, "# fair use\n", tmp_path)

    assert (report.targets, report.ratios.gateway_over_bare, report.integrity) == ((), None, None)
    assert report.fair_use is not None
    assert [t.met for t in report.fair_use.targets] == [True]
    assert sorted(p.name for p in written) == ["latest-fair-use.json", "latest-fair-use.md"]
    assert load_report(tmp_path / "latest-fair-use.json") == report


def test_the_go_originals_level_is_checked_at_c16_and_c64(soak_report: Report) -> None:
    c16, c64 = soak_report.runs[0], soak_report.runs[1]
    bare = soak_report.limits[1]
    fast_c16 = dataclasses.replace(
        c16,
        per_second=bare.per_second * 0.16,
        cpu_ms_per_request={
            **c16.cpu_ms_per_request,
            "gateway": bare.cpu_ms_per_request["bare"] * 3,
        },
    )

    targets = against_the_bare_endpoint((fast_c16, c64, *soak_report.runs[2:]), bare)

    assert [(t.target, t.value, t.met) for t in targets] == [
        ("payments/s at c16 >= 0.15 x bare endpoint", "0.160 x", True),
        ("gateway CPU/payment at c16 <= 4 x bare CPU/request", "3.0 x", True),
        ("payments/s at c64 >= 0.14 x bare endpoint", "0.139 x", False),
        ("gateway CPU/payment at c64 <= 4 x bare CPU/request", "6.3 x", False),
    ]  # the soak (a c64 all-4242 run too) is not checked again


def test_the_runs_without_webhooks_are_checked_under_their_own_names(soak_report: Report) -> None:
    c16, c64 = soak_report.runs[0], soak_report.runs[1]
    bare = soak_report.limits[1]
    without = dataclasses.replace(
        c64, name=f"{WITHOUT_WEBHOOKS} c64", per_second=bare.per_second * 0.15
    )

    targets = against_the_bare_endpoint((c16, c64, without), bare)

    assert [(t.target, t.value, t.met) for t in targets[-2:]] == [
        ("payments/s at c64, without webhooks >= 0.14 x bare endpoint", "0.150 x", True),
        ("gateway CPU/payment at c64, without webhooks <= 4 x bare CPU/request", "6.3 x", False),
    ]
    assert [t.target for t in targets[:4]] == [
        "payments/s at c16 >= 0.15 x bare endpoint",
        "gateway CPU/payment at c16 <= 4 x bare CPU/request",
        "payments/s at c64 >= 0.14 x bare endpoint",
        "gateway CPU/payment at c64 <= 4 x bare CPU/request",
    ]
