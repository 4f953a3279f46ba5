"""Measured runs: wrk against one service, with the CPU, statements and RSS they cost."""

from __future__ import annotations

import contextlib
import os
import resource
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from bench.mariadb import BenchDatabase, StatementDelta
from bench.memory import RssSampler, RssSeries
from bench.options import Options
from bench.procfs import CLOCK_TICKS, cpu_ticks, find_mariadb_pid, system_busy_ticks
from bench.progress import log
from bench.results import Integrity, LoadMode, RunResult, ServiceName, Verdict
from bench.services import Service
from bench.wrk import WrkResult, run_wrk

PAYMENTS_PATH = "/api/v1/payments"
DEPOSIT_PATH = "/api/v1/deposit"
WARM_UP_CONNECTIONS = 64


@dataclass(frozen=True)
class CpuSnapshot:
    """CPU time used so far (in ticks) by everything that takes part in a run."""

    services: Mapping[str, int]
    mariadb: int
    children: int  # processes this harness has waited for: wrk
    harness: int
    machine_busy: int
    wall: float

    @classmethod
    def take(cls, services: Mapping[str, Service], mariadb_pid: int | None) -> CpuSnapshot:
        mariadb = 0
        if mariadb_pid is not None:
            with contextlib.suppress(OSError, ValueError, IndexError):
                mariadb = cpu_ticks(mariadb_pid)
        own = resource.getrusage(resource.RUSAGE_SELF)
        waited = resource.getrusage(resource.RUSAGE_CHILDREN)
        return cls(
            services={name: service.cpu_ticks() for name, service in services.items()},
            mariadb=mariadb,
            children=round((waited.ru_utime + waited.ru_stime) * CLOCK_TICKS),
            harness=round((own.ru_utime + own.ru_stime) * CLOCK_TICKS),
            machine_busy=system_busy_ticks(),
            wall=time.monotonic(),
        )


@dataclass(frozen=True)
class CpuUsage:
    """CPU milliseconds per process group over a run, and what the rest of the machine used."""

    ms: Mapping[str, float]  # per service, "mariadb" and "wrk"
    machine_busy_pct: float  # of all cores
    background_pct: float  # of all cores, used by processes outside the benchmark

    @classmethod
    def between(cls, before: CpuSnapshot, after: CpuSnapshot) -> CpuUsage:
        ticks = {name: after.services[name] - before.services[name] for name in after.services}
        ticks["mariadb"] = after.mariadb - before.mariadb
        ticks["wrk"] = after.children - before.children
        harness = after.harness - before.harness
        busy = after.machine_busy - before.machine_busy
        capacity = (after.wall - before.wall) * (os.cpu_count() or 1) * CLOCK_TICKS
        background = max(0, busy - sum(ticks.values()) - harness)
        return cls(
            ms={name: t * 1000 / CLOCK_TICKS for name, t in ticks.items()},
            machine_busy_pct=100 * busy / capacity,
            background_pct=100 * background / capacity,
        )


@dataclass
class Harness:
    """What a benchmark session needs to measure runs: wrk, the services, the database."""

    options: Options
    wrk: str
    db: BenchDatabase | None = None
    services: dict[str, Service] = field(default_factory=dict)
    gateway_wrk: list[WrkResult] = field(default_factory=list)  # every run that made payments
    mariadb_pid: int | None = field(default_factory=find_mariadb_pid)

    def processes(self, names: list[ServiceName]) -> dict[int, str]:
        labels: dict[int, str] = {}
        for name in names:
            labels.update(self.services[name].processes())
        return labels

    def warm_up(self, target: ServiceName, mode: LoadMode, seconds: int) -> None:
        if seconds <= 0:
            return
        log(f"warm-up {target} {mode} c{WARM_UP_CONNECTIONS} for {seconds} s")
        result = run_wrk(
            self.wrk,
            self.services[target].url + _path(mode),
            mode,
            connections=WARM_UP_CONNECTIONS,
            seconds=seconds,
            threads=self.options.threads,
            label=f"warm-up {target} {mode}",
        )
        if target == "gateway":
            self.gateway_wrk.append(result)

    def measure(
        self,
        name: str,
        target: ServiceName,
        mode: LoadMode,
        *,
        connections: int,
        seconds: int,
        watch: list[ServiceName],
    ) -> tuple[RunResult, dict[str, RssSeries]]:
        """One wrk run against ``target``, measuring CPU and memory of the ``watch`` services."""
        log(f"run '{name}': {seconds} s at c{connections}")
        services: dict[str, Service] = {svc: self.services[svc] for svc in watch}
        processes = self.processes(watch)
        db = self.db if target == "gateway" else None
        rows_before = db.payment_count() if db else None
        statements_before = db.statement_count() if db else None
        cpu_before = CpuSnapshot.take(services, self.mariadb_pid)
        with RssSampler(processes) as sampler:
            wrk = run_wrk(
                self.wrk,
                self.services[target].url + _path(mode),
                mode,
                connections=connections,
                seconds=seconds,
                threads=self.options.threads,
                label=name,
            )
            # Let the requests wrk cut off at the end finish: their work belongs to this run.
            rows_after = db.wait_for_quiet_payments() if db else None
        cpu = CpuUsage.between(cpu_before, CpuSnapshot.take(services, self.mariadb_pid))
        statements_after = db.statement_count() if db else None
        if target == "gateway":
            self.gateway_wrk.append(wrk)
        created = (
            rows_after - rows_before if rows_after is not None and rows_before is not None else None
        )
        per = max(created if created is not None else wrk.ok_2xx, 1)
        delta = (
            StatementDelta.between(statements_before, statements_after)
            if statements_before and statements_after
            else None
        )
        result = RunResult(
            name=name,
            target=target,
            mode=mode,
            connections=connections,
            duration_s=wrk.duration_s,
            sent=wrk.sent,
            responses=wrk.responses,
            ok_2xx=wrk.ok_2xx,
            non_2xx=wrk.non_2xx,
            unanswered=wrk.unanswered,
            statuses=wrk.statuses,
            socket_errors=wrk.socket_errors,
            per_second=wrk.ok_2xx / wrk.duration_s,
            latency_ms=wrk.latency_ms,
            payments_created=created,
            cpu_ms_per_request={group: ms / per for group, ms in cpu.ms.items()},
            machine_busy_pct=cpu.machine_busy_pct,
            background_cpu_pct=cpu.background_pct,
            db_statements=delta.gateway if delta else None,
            db_round_trips_per_payment=delta.gateway / per if delta else None,
            db_other_clients_statements=delta.other_clients if delta else None,
            db_count_method=delta.method if delta else None,
            rss_peak_mib={label: series.peak_mib for label, series in sampler.series.items()},
            worker_restarts=set(processes) != set(self.processes(watch)),
        )
        log(
            f"  {result.per_second:,.0f}/s  p50 {result.latency_ms.p50:.1f} ms"
            f"  p99 {result.latency_ms.p99:.1f} ms  non-2xx {result.non_2xx}"
            f"  socket errors {result.total_socket_errors}"
            f"  background CPU {result.background_cpu_pct:.0f} %"
        )
        return result, sampler.series


def _path(mode: LoadMode) -> str:
    return DEPOSIT_PATH if mode == "deposit" else PAYMENTS_PATH


def check_integrity(
    db: BenchDatabase, gateway_runs: list[WrkResult], *, settle_timeout: float = 60
) -> Integrity:
    """Wait for open payments to settle, then compare the rows with wrk's 2xx answers."""
    deadline = time.monotonic() + settle_timeout
    statuses = db.payment_statuses()
    while _open(statuses) and time.monotonic() < deadline:
        time.sleep(0.5)
        statuses = db.payment_statuses()
    rows = sum(statuses.values())
    answered = sum(r.ok_2xx for r in gateway_runs)
    non_2xx = sum(r.non_2xx for r in gateway_runs)
    unanswered = sum(r.unanswered for r in gateway_runs)
    return Integrity(
        payment_rows=rows,
        answered_2xx=answered,
        answered_non_2xx=non_2xx,
        unanswered=unanswered,
        statuses=statuses,
        settled=not _open(statuses),
        verdict=integrity_verdict(rows, answered=answered, unanswered=unanswered, non_2xx=non_2xx),
    )


def _open(statuses: Mapping[str, int]) -> bool:
    return bool(statuses.get("init") or statuses.get("processing"))


def integrity_verdict(rows: int, *, answered: int, unanswered: int, non_2xx: int) -> Verdict:
    """Payment rows against wrk's counts: every 2xx answer must be a row, and no more rows
    than requests sent may exist; the requests cut off in flight may or may not be rows."""
    if rows < answered:
        return "LOST"  # a payment answered 2xx is missing from the database
    if rows > answered + unanswered + non_2xx:
        return "EXTRA"  # more rows than requests could have made: duplicates
    if rows == answered + unanswered:
        return "exact"  # every request sent is a row: the answered ones and those cut off
    return "ok"
