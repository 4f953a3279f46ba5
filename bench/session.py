"""The whole benchmark, in order (see bench/README.md for the method):

1. installs wrk if missing, creates a fresh MariaDB database and a user of its own (so that
   the database round trips of the gateway can be counted apart from any other client);
2. starts the bank simulator (1 worker) and the gateway (one worker per core) with uvicorn,
   uvloop and httptools, as in production, and warms the gateway up;
3. drives the gateway with wrk (bench/load.lua): all-4242 at c1, c4, c16 and c64, a mix of
   the three card outcomes at c64, and optionally a long c64 soak for memory flatness — measuring
   payments/s, latency, errors, CPU per payment (/proc), database statements per payment and
   the RSS of every process — all with one webhook endpoint subscribed; then, the endpoint
   disabled, all-4242 at c16 and c64 again: the Go original's work per payment (it has no
   webhooks), issue 13's like-for-like comparison;
4. checks that every payment answered 2xx is in the database (nothing lost);
5. the fair-use runs (bench/fair_use.py): a gateway with the rate limits on, where a second
   merchant's latency is measured alone and while the first merchant floods;
5b. the listing runs (bench/listing.py): 1,000,000 payments bulk-loaded, then pages of 100
   read at the start and 900,000 rows in, and with a status filter, with the query plans;
6. measures the reference "limit": the bank simulator alone and a bare FastAPI endpoint
   (bench/bare_app.py) with the same uvicorn settings, and prints the ratios;
7. writes bench/results/latest.{md,json} (plus a timestamped copy) and the service logs.

Processes, the database and the database user are always cleaned up, even on Ctrl-C.
``--only fair-use`` runs steps 1, 2 (without the gateway), 5 and 7; ``--only listing`` runs
1, 2 (without the gateway), 5b and 7; ``--only galera`` runs 1, 2 (without the gateway), the
Galera runs (bench/galera.py: three replicas on the single server, then on a 3-node Galera
cluster) and 7.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from bench.fair_use import measure_fair_use
from bench.galera import measure_galera
from bench.listing import measure_listing
from bench.logscan import scan_log
from bench.machine import machine_info
from bench.mariadb import BenchDatabase, MariaDB
from bench.markdown import render_markdown
from bench.measurement import Harness, check_integrity
from bench.memory import RssSeries, hwm_snapshot_mib, memory_rows, rss_snapshot_mib
from bench.options import Options, parse_args
from bench.paths import BENCH_DIR, REPO, RESULTS_DIR
from bench.progress import log
from bench.report import build_report, write_results
from bench.results import (
    WITHOUT_WEBHOOKS,
    Integrity,
    LoadMode,
    MemoryRow,
    Report,
    RunResult,
    ServiceName,
    WebhookDelivery,
)
from bench.services import start_service, stop_service, wait_until_ready
from bench.webhooks import subscribe, unsubscribe, wait_for_delivery
from bench.wrk import ensure_wrk

PENDING_SETTLE_SECONDS = 2
BANK_MAX_TRANSACTIONS = 20_000
RECONCILE_INTERVAL_SECONDS = 2
BANK_TIMEOUT_SECONDS = 3


def gateway_environment(db: BenchDatabase, bank_url: str, data_dir: Path) -> dict[str, str]:
    return {
        "DATABASE_URL": db.url,
        "BANK_URL": bank_url,
        "BANK_TIMEOUT_SECONDS": str(BANK_TIMEOUT_SECONDS),
        "DATA_DIR": str(data_dir),
        "LOG_LEVEL": "WARNING",
        "DEMO_MERCHANTS": "true",
        "AUTO_MIGRATE": "true",
        "RECONCILE_INTERVAL_SECONDS": str(RECONCILE_INTERVAL_SECONDS),
        "APP_ENV": "development",
        # One merchant drives the whole load here; the fair-use runs turn limits on.
        "RATE_LIMIT_ENABLED": "false",
    }


def bank_environment() -> dict[str, str]:
    return {
        "LOG_LEVEL": "WARNING",
        "PENDING_SETTLE_SECONDS": str(PENDING_SETTLE_SECONDS),
        # The bound that keeps a long load test from growing the simulator without end; the
        # reconciler only ever asks about deposits a few seconds old.
        "MAX_TRANSACTIONS": str(BANK_MAX_TRANSACTIONS),
    }


def redact(environment: dict[str, str], secret: str) -> dict[str, str]:
    return {k: v.replace(secret, "***") for k, v in environment.items()}


@contextlib.contextmanager
def terminate_on_signals() -> Iterator[None]:
    """Turn SIGTERM/SIGHUP into SystemExit so that the ``finally`` clean-up always runs."""

    def handler(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def start_stack(
    options: Options, harness: Harness, db: BenchDatabase, workdir: Path
) -> dict[str, str]:
    """Database, bank simulator and (unless --only) the gateway, ready to serve; returns the
    gateway's environment."""
    db.create()
    method = "userstat" if db.userstat else "global Questions"
    log(f"database {db.name} (statement counting: {method})")
    harness.services["bank"] = bank = start_service(
        "bank", "bank_simulator.main:app", workers=1, env=bank_environment()
    )
    wait_until_ready(bank, workers=1)
    environment = gateway_environment(db, bank.url, workdir / "gateway-data")
    if options.only:
        return environment
    harness.services["gateway"] = gateway = start_service(
        "gateway", "payment_gateway.main:app", workers=options.gateway_workers, env=environment
    )
    wait_until_ready(gateway, workers=options.gateway_workers)
    return environment


def measure_gateway(options: Options, harness: Harness) -> tuple[list[RunResult], list[MemoryRow]]:
    """Warm-up, the headline runs, the mixed run and the optional soak; memory per process.

    The webhook receiver is watched so that its CPU is not counted as background; it is left
    out of the memory table, since it keeps every request it has received in memory."""
    watched: list[ServiceName] = ["gateway", "bank", "receiver"]
    harness.warm_up("gateway", "payments", options.warmup)
    rss_after_warmup = rss_snapshot_mib(harness.processes(watched))
    plan: list[tuple[str, LoadMode, int, int]] = [
        ("gateway 4242", "payments", 1, options.duration),
        ("gateway 4242", "payments", 4, options.duration),
        ("gateway 4242", "payments", 16, options.duration),
        ("gateway 4242", "payments", 64, options.duration),
        ("gateway mixed outcomes", "mixed", 64, options.duration),
    ]
    if options.soak:
        plan.append(("soak 4242", "payments", 64, options.soak))
    runs: list[RunResult] = []
    series: list[dict[str, RssSeries]] = []
    for name, mode, connections, seconds in plan:
        result, samples = harness.measure(
            f"{name} c{connections}",
            "gateway",
            mode,
            connections=connections,
            seconds=seconds,
            watch=watched,
        )
        runs.append(result)
        series.append(samples)

    peaks: dict[str, float] = {}
    for run in runs:
        for label, mib in run.rss_peak_mib.items():
            peaks[label] = max(peaks.get(label, 0.0), mib)
    if options.soak:
        span = series[-1]  # the soak itself
        # By the soak every process has served a minute of load: that is its warm state,
        # so growth is measured over the soak alone.
        rss_after_warmup = {
            label: samples.first_mib for label, samples in span.items() if samples.samples
        }
    else:  # from the start of the first run to the end of the last
        span = {
            label: RssSeries(series[0][label].samples[:1] + last.samples[-1:])
            for label, last in series[-1].items()
            if label in series[0]
        }
    hwm = hwm_snapshot_mib(harness.processes(watched))
    rows = memory_rows(rss_after_warmup, span, peaks, hwm)
    return runs, [row for row in rows if not row.process.startswith("receiver")]


def count_payments(db: BenchDatabase, harness: Harness) -> Integrity:
    """The nothing-lost check over every gateway run so far, once open payments settled."""
    log("waiting for open payments to settle, then counting rows")
    integrity = check_integrity(db, harness.gateway_wrk)
    log(
        f"  rows {integrity.payment_rows:,}, 2xx {integrity.answered_2xx:,}, "
        f"in flight {integrity.unanswered}: {integrity.verdict}"
    )
    return integrity


def measure_without_webhooks(options: Options, harness: Harness) -> list[RunResult]:
    """All-4242 at c16 and c64 with no webhook endpoint: what the Go original does per payment
    (it has no webhooks). Each payment still commits its event; nothing is sent."""
    return [
        harness.measure(
            f"{WITHOUT_WEBHOOKS} c{connections}",
            "gateway",
            "payments",
            connections=connections,
            seconds=options.duration,
            watch=["gateway", "bank"],
        )[0]
        for connections in (16, 64)
    ]


def measure_limits(options: Options, harness: Harness) -> list[RunResult]:
    """The reference limit: the bank simulator alone, then the bare FastAPI endpoint, at c64."""
    harness.warm_up("bank", "deposit", options.warmup)
    bank, _ = harness.measure(
        "bank simulator alone (deposit)",
        "bank",
        "deposit",
        connections=64,
        seconds=options.duration,
        watch=["bank"],
    )
    stop_service(harness.services["bank"])
    harness.services["bare"] = start_service(
        "bare", "bare_app:app", workers=options.gateway_workers, env={}, app_dir=BENCH_DIR
    )
    wait_until_ready(harness.services["bare"], workers=options.gateway_workers)
    harness.warm_up("bare", "payments", options.warmup)
    bare, _ = harness.measure(
        "bare FastAPI endpoint",
        "bare",
        "payments",
        connections=64,
        seconds=options.duration,
        watch=["bare"],
    )
    stop_service(harness.services["bare"])
    return [bank, bare]


def run_session(options: Options, harness: Harness, db: BenchDatabase, workdir: Path) -> Report:
    started = datetime.now(UTC)
    clock = time.monotonic()
    environment = start_stack(options, harness, db, workdir)
    runs: list[RunResult] = []
    memory: list[MemoryRow] = []
    integrity: Integrity | None = None
    webhooks: WebhookDelivery | None = None
    if not options.only:
        gateway = harness.services["gateway"]
        # Before the warm-up: the headline gateway has its merchant's endpoint subscribed.
        harness.services["receiver"], endpoint_id = subscribe(gateway)
        runs, memory = measure_gateway(options, harness)
        # Every payment settled, so every event is written before the receiver is waited for.
        count_payments(db, harness)
        log("waiting for every event to reach the webhook receiver")
        webhooks = wait_for_delivery(db, harness.services["receiver"])
        log(
            f"  events {webhooks.events:,}, delivered {webhooks.delivered:,}, undelivered "
            f"{webhooks.undelivered}, duplicates {webhooks.duplicates}, lag p50 "
            f"{webhooks.lag_ms.p50:.0f} ms p99 {webhooks.lag_ms.p99:.0f} ms"
        )
        unsubscribe(gateway, endpoint_id)  # the later runs of the session send nothing
        stop_service(harness.services["receiver"])
        runs += measure_without_webhooks(options, harness)
        integrity = count_payments(db, harness)  # every run's payments, these included
        stop_service(gateway)

    # Galera is only run when asked for (--only galera): it starts a cluster of its own.
    galera = measure_galera(harness, environment) if options.only == "galera" else None
    # After the integrity check: its payments are not among the headline runs' rows.
    fair_use = (
        measure_fair_use(harness, environment) if options.only in (None, "fair-use") else None
    )
    # After the payment runs: the million rows it loads would slow their inserts down.
    listing = (
        measure_listing(harness, db, environment) if options.only in (None, "listing") else None
    )
    limits = [] if options.only else measure_limits(options, harness)
    return build_report(
        options,
        machine_info(db.version(), harness.wrk),
        runs,
        limits,
        integrity,
        memory,
        "soak" if options.soak else "runs",
        [scan_log(service.log_path) for service in harness.services.values()],
        redact(environment, db.password),
        started,
        time.monotonic() - clock,
        fair_use,
        listing,
        galera,
        webhooks,
    )


def cleanup(harness: Harness, admin: MariaDB | None, workdir: Path) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not stop the clean-up
    try:
        for service in harness.services.values():
            if not service.log_file.closed:
                log(f"stopping {service.name}")
                stop_service(service)
        if harness.db is not None:
            harness.db.drop(keep=harness.options.keep_db)
        if admin is not None:
            admin.close()
        shutil.rmtree(workdir, ignore_errors=True)
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "wrk.log").write_text("")
    harness = Harness(options, ensure_wrk())
    admin: MariaDB | None = None
    workdir = Path(tempfile.mkdtemp(prefix="pgw-bench-"))
    with terminate_on_signals():
        try:
            admin = MariaDB()
            harness.db = db = BenchDatabase(admin)
            report = run_session(options, harness, db, workdir)
        except KeyboardInterrupt:
            log("interrupted")
            return 130
        finally:
            cleanup(harness, admin, workdir)
    markdown = render_markdown(report)
    written = write_results(report, markdown)
    print()
    print(markdown)
    log("wrote " + ", ".join(str(p.relative_to(REPO)) for p in written))
    return 0
