"""A fair-use result to attach to a stored report (results from before it have none)."""

from __future__ import annotations

import dataclasses

from bench.report import check_fair_use_targets
from bench.results import FairUse, FairUseRun, Latency, MerchantLoad, RateLimitStorage, Report

NO_SOCKET_ERRORS = {"connect": 0, "read": 0, "write": 0, "timeout": 0}


def latency(p50: float, p99: float) -> Latency:
    return Latency(
        p50=p50, p75=p50 * 1.2, p90=p50 * 1.5, p99=p99, p99_9=p99 * 1.3, mean=p50, max=p99 * 2
    )


def second_merchant(p50: float, p99: float, answers: int) -> MerchantLoad:
    return MerchantLoad(
        merchant="second",
        connections=4,
        delay_ms=80,
        duration_s=15.0,
        sent=answers + 1,
        responses=answers,
        statuses={"201": answers},
        unexpected=0,
        socket_errors=NO_SOCKET_ERRORS,
        ok_per_second=answers / 15.0,
        limited_per_second=0.0,
        latency_ms=latency(p50, p99),
    )


def fair_use_run(
    storage: RateLimitStorage = "memory", *, quiet_p99: float = 30.0, flooded_p99: float = 45.0
) -> FairUseRun:
    return FairUseRun(
        storage=storage,
        rate_limit_per_second=100,
        rate_limit_burst=200,
        quiet=second_merchant(11.0, quiet_p99, 650),
        flooded=second_merchant(14.5, flooded_p99, 600),
        flooder=MerchantLoad(
            merchant="first",
            connections=50,
            delay_ms=0,
            duration_s=18.0,
            sent=21_650,
            responses=21_600,
            statuses={"201": 3_600, "429": 18_000},
            unexpected=0,
            socket_errors=NO_SOCKET_ERRORS,
            ok_per_second=200.0,
            limited_per_second=1000.0,
            latency_ms=latency(40.0, 120.0),
        ),
        p99_ratio=flooded_p99 / quiet_p99,
        gateway_cpu_ms_per_answer_quiet=1.5,
        gateway_cpu_ms_per_answer_flood=0.25,
        machine_busy_pct_quiet=30.0,
        machine_busy_pct_flood=98.0,
        background_cpu_pct=2.0,
    )


def with_fair_use(report: Report, *runs: FairUseRun) -> Report:
    return dataclasses.replace(report, fair_use=FairUse(runs, check_fair_use_targets(runs)))
