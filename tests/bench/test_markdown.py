"""The Markdown report: stored results render exactly as the benchmark wrote them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from bench.markdown import render_markdown
from bench.results import Ratios, Report, load_report
from tests.bench.fair_use_sample import fair_use_run, with_fair_use
from tests.bench.stored_results import NO_SOAK_RESULT, STORED_JSON


@pytest.mark.parametrize("path", STORED_JSON, ids=lambda path: path.name)
def test_a_stored_result_renders_as_its_stored_markdown(path: Path) -> None:
    assert render_markdown(load_report(path)) == path.with_suffix(".md").read_text()


def test_the_headline_lines_of_the_soak_run(soak_report: Report) -> None:
    lines = render_markdown(soak_report).splitlines()

    assert lines[0] == "## Benchmark results"
    assert lines[2].startswith("2026-11-25T22:28:58+00:00 · AMD EPYC · 2 cores")
    assert lines[2].endswith("· git 9003871")
    assert (
        "| gateway 4242 c64 | 64 | 1,606 | 38.1 | 56.4 | 74.9 | 0 | 0 | 0.81 | 0.19 | 0.15 "
        "| 1.45 | 112 / 112 | 65 | 1 % |"
    ) in lines
    assert "Gateway c64 / bare endpoint: **0.139** (1/7.2)  " in lines
    assert "| stretch: payments/s at c64 >= 1,750 | 1,606 | **no** |" in lines
    assert "120 s soak at c64, after the other runs have warmed every process up; " in (
        "\n".join(lines)
    )


def test_a_run_without_soak_says_so() -> None:
    markdown = render_markdown(load_report(NO_SOAK_RESULT))

    assert "No soak run (use `--full` or `--soak 120`)" in markdown
    assert "over the soak" not in markdown


def test_a_quick_run_is_marked_not_representative(soak_report: Report) -> None:
    quick = dataclasses.replace(soak_report, quick=True)

    assert render_markdown(quick).startswith(
        "## Benchmark results (quick smoke run: not representative)\n"
    )


def test_lost_payments_and_open_payments_are_called_out(soak_report: Report) -> None:
    assert soak_report.integrity is not None
    integrity = dataclasses.replace(soak_report.integrity, verdict="LOST", settled=False)

    markdown = render_markdown(dataclasses.replace(soak_report, integrity=integrity))

    assert "Verdict: **LOST** (fewer rows than 2xx answers: payments were lost!)." in markdown
    assert "succeeded 245,860 — **some payments were still open after 60 s**" in markdown


def test_a_noisy_run_gets_notes(soak_report: Report) -> None:
    noisy = dataclasses.replace(
        soak_report.runs[0],
        background_cpu_pct=37.4,
        worker_restarts=True,
        statuses={"201": 100, "503": 7},
        db_other_clients_statements=9000,
        db_statements=41299,
    )
    report = dataclasses.replace(soak_report, runs=(noisy, *soak_report.runs[1:]))

    markdown = render_markdown(report)

    assert (
        "- 'gateway 4242 c16': processes outside the benchmark used 37 % of the machine's CPU "
        "during the run: the numbers are lower than on a quiet machine"
    ) in markdown
    assert "- 'gateway 4242 c16': a worker was restarted during the run" in markdown
    assert "- 'gateway 4242 c16': non-2xx answers by status: {'503': 7}" in markdown
    assert "- 'gateway 4242 c16': other clients sent 9,000 statements" in markdown


def test_a_quiet_run_has_no_run_notes(soak_report: Report) -> None:
    markdown = render_markdown(soak_report)

    assert "'gateway 4242 c16':" not in markdown
    assert "### Notes" in markdown  # the gateway log's warnings are still noted


def test_the_fair_use_table_and_its_targets(soak_report: Report) -> None:
    report = with_fair_use(
        soak_report,
        fair_use_run("memory", quiet_p99=30.0, flooded_p99=45.0),
        fair_use_run("redis", quiet_p99=30.0, flooded_p99=75.0),
    )

    lines = render_markdown(report).splitlines()

    start = lines.index("### Fair use: one merchant floods (issue 8)")
    assert lines.index("### Nothing lost") < start < lines.index("### Memory (VmRSS, MiB)")
    assert lines[start + 2].startswith(
        "A gateway of its own with the rate limits on (100 requests/s per API key, burst 200). "
        "The second merchant: 4 connections, each pausing 80 ms before its next request"
    )
    assert (
        "| memory (per worker) | 11.0 | 30.0 | 14.5 | 45.0 | 1.50 | 200 | 1,000 | 43 / 40 "
        "| 1.50 / 0.25 | 30 % / 98 % |"
    ) in lines
    assert lines[start + 7].startswith("| Redis (shared) | 11.0 | 30.0 | 14.5 | 75.0 | 2.50 |")
    assert (
        "| other merchant's p99 under flood <= 2x quiet (memory counters) "
        "| 1.50x (30.0 -> 45.0 ms) | yes |"
    ) in lines
    assert (
        "| other merchant's p99 under flood <= 2x quiet (redis counters) "
        "| 2.50x (30.0 -> 75.0 ms) | **no** |"
    ) in lines


def test_the_fair_use_section_names_the_in_flight_cap_it_ran_with(soak_report: Report) -> None:
    capped = dataclasses.replace(fair_use_run("memory"), rate_limit_max_in_flight=4)

    lines = render_markdown(with_fair_use(soak_report, capped)).splitlines()

    start = lines.index("### Fair use: one merchant floods (issue 8)")
    assert lines[start + 2].startswith(
        "A gateway of its own with the rate limits on (100 requests/s per API key, burst 200, "
        "at most 4 requests in progress per worker for a key refused within its window). "
    )


def test_a_stored_result_without_fair_use_has_no_such_section(soak_report: Report) -> None:
    assert "Fair use" not in render_markdown(soak_report)


def test_unexpected_answers_and_a_noisy_machine_in_the_fair_use_run_get_notes(
    soak_report: Report,
) -> None:
    run = fair_use_run()
    flooded = dataclasses.replace(run.flooded, statuses={"201": 590, "429": 10}, unexpected=10)
    noisy = dataclasses.replace(run, flooded=flooded, background_cpu_pct=40.0)

    markdown = render_markdown(with_fair_use(soak_report, noisy))

    assert (
        "- 'fair use (memory)', second merchant under flood: 10 answer(s) with an unexpected "
        "status, 0 socket error(s); non-2xx by status: {'429': 10}"
    ) in markdown
    assert "- 'fair use (memory)': processes outside the benchmark used 40 %" in markdown
    assert "'fair use (memory)', flooder" not in markdown  # its 429s are expected


def test_a_fair_use_only_run_shows_just_that(soak_report: Report) -> None:
    options = dataclasses.replace(soak_report.options, only="fair-use")
    partial = dataclasses.replace(
        soak_report,
        options=options,
        runs=(),
        limits=(),
        integrity=None,
        memory=(),
        targets=(),
        ratios=Ratios(gateway_over_bare=None, gateway_over_bank=None),
    )

    markdown = render_markdown(with_fair_use(partial, fair_use_run()))

    assert "### Fair use: one merchant floods (issue 8)" in markdown
    for absent in ("### Gateway", "### Reference limit", "### Nothing lost", "### Memory"):
        assert absent not in markdown
    assert "### Targets (issue 5)" not in markdown
