"""The Galera run's parts that need no cluster: its latency merge, its section of the report
(typed, JSON and Markdown), and --only galera with its kept result files."""

from __future__ import annotations

import dataclasses

from bench.galera import _latency
from bench.markdown import render_markdown
from bench.options import parse_args
from bench.report import result_names
from bench.results import ClusterRun, Galera, Latency, Report, report_from_json, report_to_json
from bench.wrk import WrkResult


def latency(p50: float, p99: float) -> Latency:
    return Latency(p50=p50, p75=p50, p90=p99, p99=p99, p99_9=p99, mean=p50, max=p99)


def cluster_run(name: str, nodes: int, per_second: float, p50: float, p99: float) -> ClusterRun:
    return ClusterRun(
        name=name,
        nodes=nodes,
        replicas=3,
        connections=48,
        duration_s=15.0,
        responses=int(per_second * 15),
        non_2xx=0,
        socket_errors=0,
        per_second=per_second,
        latency_ms=latency(p50, p99),
        gateway_cpu_ms_per_payment=1.2,
        mariadb_cpu_ms_per_payment=0.4 * nodes,
        background_cpu_pct=2,
    )


def galera() -> Galera:
    return Galera(
        cluster_start_s=5.1,
        runs=(
            cluster_run("single server", 1, 1000, 40, 90),
            cluster_run("Galera, 3 nodes", 3, 600, 70, 160),
        ),
        payments_per_second_ratio=0.6,
        node_settings={"wsrep_slave_threads": "2", "binlog_format": "ROW"},
    )


def test_three_runs_merge_into_mean_centre_and_worst_tail() -> None:
    runs = [
        WrkResult(15, 100, 100, {"201": 100}, 0, {}, latency(p50, p99))
        for p50, p99 in ((10, 50), (20, 80), (30, 60))
    ]
    merged = _latency(runs)
    assert (merged.p50, merged.p99, merged.max) == (20, 80, 80)


def test_the_galera_section_goes_through_json_and_markdown(soak_report: Report) -> None:
    report = dataclasses.replace(soak_report, galera=galera())

    assert report_from_json(report_to_json(report)) == report
    lines = render_markdown(report).splitlines()
    start = lines.index("### Galera cluster (issue 15)")
    assert "started on loopback in 5.1 s" in lines[start + 2]
    assert "`binlog_format=ROW`, `wsrep_slave_threads=2`; the gateway" in lines[start + 2]
    assert "| single server | 1 | 1,000 | 40.0 | 90.0 | 90.0 | 0 | 0 | 1.20 | 0.40 | 2 % |" in lines
    assert (
        "| Galera, 3 nodes | 3 | 600 | 70.0 | 160.0 | 160.0 | 0 | 0 | 1.20 | 1.20 | 2 % |" in lines
    )
    assert "The cluster makes 60% of the single server's payments/s." in lines


def test_a_stored_result_without_galera_has_no_such_section(soak_report: Report) -> None:
    assert soak_report.galera is None
    assert "### Galera cluster (issue 15)" not in render_markdown(soak_report)


def test_only_galera_keeps_a_timestamped_copy(soak_report: Report) -> None:
    options = parse_args(["--only", "galera"])
    assert options.only == "galera"
    report = dataclasses.replace(soak_report, options=options, date="2026-12-02T05:00:00+00:00")
    assert result_names(report) == ["latest-galera", "20261202T050000Z-galera"]
