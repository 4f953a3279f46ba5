"""The fair-use run (issue 8): does a merchant flooding the gateway slow the others down?

A gateway of its own, with the rate limits on at their defaults, serves two demo merchants:

1. quiet: the second merchant alone, at a low, paced concurrency -> its p50/p99;
2. flood: the first merchant at c50 as fast as it can (mostly 429 once over its limit) and,
   meanwhile, the second merchant exactly as in 1 -> the second's p50/p99, the first's 2xx/s
   and 429/s.

It runs once with the counters in memory (each worker counts alone) and, when Redis answers,
once more with them in Redis (one budget for all workers) under a prefix of its own, whose keys
are deleted afterwards.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import redis
from payment_gateway.config import Settings

from bench.measurement import PAYMENTS_PATH, CpuSnapshot, CpuUsage, Harness
from bench.progress import log
from bench.results import FairUseRun, MerchantLoad, RateLimitStorage
from bench.services import Service, start_service, stop_service, wait_until_ready
from bench.wrk import FIRST_MERCHANT_TOKEN, SECOND_MERCHANT_TOKEN, WrkResult, run_wrk

FLOOD_CONNECTIONS = 50
OTHER_CONNECTIONS = 4
# Four connections that pause 80 ms before each request send at most 50 requests/s: a busy
# merchant well inside the default per-key limit, so its own 429s cannot blur its latency.
OTHER_DELAY_MS = 80
FLOOD_TAIL_SECONDS = 1  # the flood outlasts the other merchant's run
REDIS_URL = "redis://127.0.0.1:6379/15"
FLOODER_EXPECTS = ("2xx", "429")  # refusals are the limit working, not errors
OTHER_EXPECTS = ("2xx",)


@dataclass(frozen=True)
class RateLimits:
    per_second: int
    burst: int
    max_in_flight: int  # per worker, for a key refused within its window

    @property
    def window_seconds(self) -> int:
        return self.burst // self.per_second

    @classmethod
    def defaults(cls) -> RateLimits:
        """The gateway's own defaults; model_construct reads no environment variable."""
        settings = Settings.model_construct()
        return cls(
            settings.rate_limit_per_second,
            settings.effective_rate_limit_burst,
            settings.rate_limit_max_in_flight,
        )

    def environment(self) -> dict[str, str]:
        # Set explicitly, so that a RATE_LIMIT_* in the caller's environment cannot leak in.
        return {
            "RATE_LIMIT_ENABLED": "true",
            "RATE_LIMIT_PER_SECOND": str(self.per_second),
            "RATE_LIMIT_BURST": str(self.burst),
            "RATE_LIMIT_MAX_IN_FLIGHT": str(self.max_in_flight),
        }


def measure_fair_use(harness: Harness, gateway_environment: Mapping[str, str]) -> list[FairUseRun]:
    """The fair-use runs: counters in memory, then in Redis when it answers."""
    limits = RateLimits.defaults()
    runs = [_measure(harness, gateway_environment, limits, "memory", {})]
    if not _redis_answers(REDIS_URL):
        log(f"fair use: Redis at {REDIS_URL} does not answer: no Redis variant")
        return runs
    prefix = f"pgw-bench-{secrets.token_hex(6)}"
    redis_environment = {"REDIS_URL": REDIS_URL, "RATE_LIMIT_KEY_PREFIX": prefix}
    with _deleting_keys(REDIS_URL, prefix):
        runs.append(_measure(harness, gateway_environment, limits, "redis", redis_environment))
    return runs


def _measure(
    harness: Harness,
    gateway_environment: Mapping[str, str],
    limits: RateLimits,
    storage: RateLimitStorage,
    storage_environment: dict[str, str],
) -> FairUseRun:
    options = harness.options
    environment = {
        **gateway_environment,
        **limits.environment(),
        **storage_environment,
    }
    name = f"gateway-limits-{storage}"
    harness.services[name] = service = start_service(
        name, "payment_gateway.main:app", workers=options.gateway_workers, env=environment
    )
    try:
        wait_until_ready(service, workers=options.gateway_workers)
        _warm_up(harness, service)
        seconds = options.duration
        log(f"fair use ({storage}): second merchant alone, {seconds} s")
        before = CpuSnapshot.take({name: service}, harness.mariadb_pid)
        quiet = _other_merchant(harness, service, seconds, "quiet")
        quiet_cpu = CpuUsage.between(before, CpuSnapshot.take({name: service}, harness.mariadb_pid))
        log(f"fair use ({storage}): first merchant floods at c{FLOOD_CONNECTIONS}")
        before = CpuSnapshot.take({name: service}, harness.mariadb_pid)
        flooder, flooded = _flood(harness, service, limits, seconds)
        flood_cpu = CpuUsage.between(before, CpuSnapshot.take({name: service}, harness.mariadb_pid))
    finally:
        stop_service(service)
    run = FairUseRun(
        storage=storage,
        rate_limit_per_second=limits.per_second,
        rate_limit_burst=limits.burst,
        quiet=merchant_load("second", quiet, OTHER_CONNECTIONS, OTHER_DELAY_MS),
        flooded=merchant_load("second", flooded, OTHER_CONNECTIONS, OTHER_DELAY_MS),
        flooder=merchant_load("first", flooder, FLOOD_CONNECTIONS, 0),
        p99_ratio=flooded.latency_ms.p99 / quiet.latency_ms.p99,
        gateway_cpu_ms_per_answer_quiet=quiet_cpu.ms[name] / max(quiet.responses, 1),
        gateway_cpu_ms_per_answer_flood=flood_cpu.ms[name]
        / max(flooder.responses + flooded.responses, 1),
        machine_busy_pct_quiet=quiet_cpu.machine_busy_pct,
        machine_busy_pct_flood=flood_cpu.machine_busy_pct,
        background_cpu_pct=max(quiet_cpu.background_pct, flood_cpu.background_pct),
        rate_limit_max_in_flight=limits.max_in_flight,
    )
    log(
        f"  second merchant p99 {run.quiet.latency_ms.p99:.1f} ms alone, "
        f"{run.flooded.latency_ms.p99:.1f} ms under the flood ({run.p99_ratio:.2f}x); "
        f"flooder {run.flooder.ok_per_second:,.0f} 2xx/s, "
        f"{run.flooder.limited_per_second:,.0f} 429/s; machine busy "
        f"{run.machine_busy_pct_flood:.0f} %"
    )
    return run


def _warm_up(harness: Harness, service: Service) -> None:
    """Both paths warm: the flooder's burst makes payments, the rest of its requests are 429s."""
    seconds = harness.options.warmup
    if seconds <= 0:
        return
    log(f"warm-up {service.name}: first merchant at c{FLOOD_CONNECTIONS} for {seconds} s")
    run_wrk(
        harness.wrk,
        service.url + PAYMENTS_PATH,
        "payments",
        connections=FLOOD_CONNECTIONS,
        seconds=seconds,
        threads=harness.options.threads,
        label=f"warm-up {service.name}",
        expect=FLOODER_EXPECTS,
    )


def _other_merchant(harness: Harness, service: Service, seconds: int, phase: str) -> WrkResult:
    return run_wrk(
        harness.wrk,
        service.url + PAYMENTS_PATH,
        "payments",
        connections=OTHER_CONNECTIONS,
        seconds=seconds,
        threads=harness.options.threads,
        label=f"{service.name} second merchant {phase}",
        token=SECOND_MERCHANT_TOKEN,
        expect=OTHER_EXPECTS,
        delay_ms=OTHER_DELAY_MS,
    )


def _flood(
    harness: Harness, service: Service, limits: RateLimits, seconds: int
) -> tuple[WrkResult, WrkResult]:
    """The first merchant floods; once its burst is spent, the second runs as when alone.

    The second merchant starts one rate-limit window after the flood: the burst the limit
    allows the flooder at first is the limit working as designed, the steady flood is the test.
    """
    lead = limits.window_seconds
    flood: list[WrkResult] = []
    flooder = threading.Thread(
        target=lambda: flood.append(
            run_wrk(
                harness.wrk,
                service.url + PAYMENTS_PATH,
                "payments",
                connections=FLOOD_CONNECTIONS,
                seconds=lead + seconds + FLOOD_TAIL_SECONDS,
                threads=harness.options.threads,
                label=f"{service.name} first merchant flooding",
                token=FIRST_MERCHANT_TOKEN,
                expect=FLOODER_EXPECTS,
            )
        ),
        name="flooder",
    )
    flooder.start()
    try:
        time.sleep(lead)
        flooded = _other_merchant(harness, service, seconds, "under flood")
    finally:
        flooder.join()
    if not flood:
        raise RuntimeError("the flooding wrk run failed: see results/wrk.log")
    return flood[0], flooded


def merchant_load(merchant: str, wrk: WrkResult, connections: int, delay_ms: int) -> MerchantLoad:
    return MerchantLoad(
        merchant=merchant,
        connections=connections,
        delay_ms=delay_ms,
        duration_s=wrk.duration_s,
        sent=wrk.sent,
        responses=wrk.responses,
        statuses=wrk.statuses,
        unexpected=wrk.unexpected,
        socket_errors=wrk.socket_errors,
        ok_per_second=wrk.ok_2xx / wrk.duration_s,
        limited_per_second=wrk.per_second("429"),
        latency_ms=wrk.latency_ms,
    )


def _redis_answers(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


@contextlib.contextmanager
def _deleting_keys(url: str, prefix: str) -> Iterator[None]:
    """Delete the rate-limit counters under ``prefix`` afterwards, whatever happened."""
    try:
        yield
    finally:
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=5)
        try:
            keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
            if keys:
                client.delete(*keys)
            log(f"fair use: deleted {len(keys)} rate-limit key(s) under {prefix} in Redis")
        except redis.RedisError as error:
            log(f"fair use: could not delete the keys under {prefix}: {error}")
        finally:
            client.close()
