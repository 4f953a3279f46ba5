"""The Galera run (issue 15, ``--only galera``): what synchronous replication costs a payment.

Two configurations, measured the same way in one session, each with three gateway replicas
(one uvicorn worker each, as in Kubernetes) and three wrk processes at once, one per replica,
with a third of the connections each:

- *single server*: the three replicas on the benchmark's database on the machine's MariaDB
  (127.0.0.1:3306), as the other runs;
- *Galera, 3 nodes*: a 3-node cluster started on loopback (``payment_gateway/tests/
  galera_cluster.py``, the Galera tests' fixture), one replica per node.

payments/s is the three wrk runs' 2xx answers added up; p50 is their mean and p99 the worst
of the three. CPU per payment is the three replicas together and every ``mariadbd`` of the
configuration (one, or three). Everything shares the machine's cores.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence

from bench.measurement import PAYMENTS_PATH, Harness
from bench.paths import REPO
from bench.procfs import CLOCK_TICKS, cpu_ticks, system_busy_ticks
from bench.progress import log
from bench.results import ClusterRun, Galera, Latency
from bench.services import Service, start_service, stop_service, wait_until_ready
from bench.wrk import WrkResult, run_wrk

sys.path.append(str(REPO / "payment_gateway" / "tests"))  # the Galera tests' cluster module
from galera_cluster import GaleraCluster

REPLICAS = 3
CONNECTIONS = 48  # 16 per replica
GALERA_DATABASE = "pgw_bench_galera"


def measure_galera(harness: Harness, gateway_environment: Mapping[str, str]) -> Galera:
    single = _measure("single server", harness, [dict(gateway_environment)] * REPLICAS, [])
    cluster = GaleraCluster.create()
    try:
        log("galera: starting a 3-node cluster on loopback")
        cluster.start()
        log(f"galera: cluster up in {cluster.start_seconds:.1f} s")
        cluster.create_database(GALERA_DATABASE)
        environments = [
            {**gateway_environment, "DATABASE_URL": node.url(GALERA_DATABASE)}
            for node in cluster.nodes
        ]
        # The first replica migrates (AUTO_MIGRATE refuses on a cluster: migrate first).
        _migrate(environments[0])
        pids = [node.process.pid for node in cluster.nodes if node.process is not None]
        galera = _measure("Galera, 3 nodes", harness, environments, pids)
        settings = dict(
            line.split("\t")
            for line in cluster.sql(
                "SHOW GLOBAL VARIABLES WHERE Variable_name IN ("
                "'wsrep_slave_threads', 'innodb_flush_log_at_trx_commit', 'binlog_format', "
                "'innodb_autoinc_lock_mode')"
            ).splitlines()
        )
    finally:
        cluster.stop()
    return Galera(
        cluster_start_s=round(cluster.start_seconds, 1),
        runs=(single, galera),
        payments_per_second_ratio=galera.per_second / single.per_second,
        node_settings=settings,
    )


def _migrate(environment: Mapping[str, str]) -> None:
    subprocess.run(
        [sys.executable, "-m", "payment_gateway", "migrate"],
        env={**os.environ, **environment},
        cwd=REPO,
        check=True,
        capture_output=True,
    )


def _measure(
    name: str,
    harness: Harness,
    environments: Sequence[Mapping[str, str]],
    mariadb_pids: list[int],
) -> ClusterRun:
    """Three replicas, warmed up, then three wrk runs at once; the replicas are stopped."""
    options = harness.options
    pids = mariadb_pids or ([harness.mariadb_pid] if harness.mariadb_pid else [])
    replicas: list[Service] = []
    try:
        for number, environment in enumerate(environments, start=1):
            label = f"gateway-{'galera' if mariadb_pids else 'single'}-{number}"
            replica = start_service(
                label, "payment_gateway.main:app", workers=1, env=dict(environment)
            )
            harness.services[label] = replica
            replicas.append(replica)
            wait_until_ready(replica, workers=1)  # one at a time: the first one seeds
        if options.warmup:
            _wrk_all(harness, replicas, options.warmup, f"warm-up {name}")
        log(f"galera: {name}, {REPLICAS} replicas, c{CONNECTIONS}, {options.duration} s")
        before = _ticks(replicas, pids)
        busy_before, wall_before = system_busy_ticks(), time.monotonic()
        results = _wrk_all(harness, replicas, options.duration, name)
        after = _ticks(replicas, pids)
        busy = system_busy_ticks() - busy_before
        wall = time.monotonic() - wall_before
    finally:
        for replica in replicas:
            stop_service(replica)
    ok = sum(r.ok_2xx for r in results)
    payments = max(ok, 1)
    duration = max(r.duration_s for r in results)
    ours = (after[0] - before[0]) + (after[1] - before[1])
    capacity = wall * (os.cpu_count() or 1) * CLOCK_TICKS
    return ClusterRun(
        name=name,
        nodes=len(pids),
        replicas=REPLICAS,
        connections=CONNECTIONS,
        duration_s=round(duration, 2),
        responses=sum(r.responses for r in results),
        non_2xx=sum(r.non_2xx for r in results),
        socket_errors=sum(sum(r.socket_errors.values()) for r in results),
        per_second=ok / duration,
        latency_ms=_latency(results),
        gateway_cpu_ms_per_payment=(after[0] - before[0]) * 1000 / CLOCK_TICKS / payments,
        mariadb_cpu_ms_per_payment=(after[1] - before[1]) * 1000 / CLOCK_TICKS / payments,
        background_cpu_pct=100 * max(0, busy - ours) / capacity,
    )


def _ticks(replicas: Sequence[Service], mariadb_pids: Sequence[int]) -> tuple[int, int]:
    gateway = sum(replica.cpu_ticks() for replica in replicas)
    mariadb = 0
    for pid in mariadb_pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            mariadb += cpu_ticks(pid)
    return gateway, mariadb


def _wrk_all(
    harness: Harness, replicas: Sequence[Service], seconds: int, label: str
) -> list[WrkResult]:
    """One wrk per replica, all at once, each with its share of the connections."""
    results: dict[int, WrkResult] = {}
    errors: list[BaseException] = []

    def run(index: int, replica: Service) -> None:
        try:
            results[index] = run_wrk(
                harness.wrk,
                replica.url + PAYMENTS_PATH,
                "payments",
                connections=CONNECTIONS // len(replicas),
                seconds=seconds,
                threads=1,
                label=f"{label} ({replica.name})",
            )
        except BaseException as exc:  # re-raised below, in the harness's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=item) for item in enumerate(replicas)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return [results[index] for index in range(len(replicas))]


def _latency(results: Sequence[WrkResult]) -> Latency:
    """Mean of the runs' central figures, the worst of their tails."""

    def mean(values: Sequence[float]) -> float:
        return sum(values) / len(values)

    lat = [r.latency_ms for r in results]
    return Latency(
        p50=mean([x.p50 for x in lat]),
        p75=mean([x.p75 for x in lat]),
        p90=max(x.p90 for x in lat),
        p99=max(x.p99 for x in lat),
        p99_9=max(x.p99_9 for x in lat),
        mean=mean([x.mean for x in lat]),
        max=max(x.max for x in lat),
    )
