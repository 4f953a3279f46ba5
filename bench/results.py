"""The benchmark report as typed records, and its JSON form (``results/*.json``).

The JSON layout is the one every stored result has: the field names and their order here are
the keys and their order in the files, so old results load and new ones read the same. Fields
added later have a default and are left out of the JSON while they hold it (``exclude_defaults``),
so an old result is written back byte for byte.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, TypeAdapter

from bench.options import Options

ServiceName = Literal["gateway", "bank", "bare", "receiver"]  # receiver: issue 11's webhooks
LoadMode = Literal["payments", "mixed", "deposit", "list"]  # the modes of load.lua
CountMethod = Literal["user_statistics", "global_questions"]
Verdict = Literal["exact", "ok", "LOST", "EXTRA"]
MemoryKind = Literal["soak", "runs"]
RateLimitStorage = Literal["memory", "redis"]  # where the fair-use gateway counts requests
# The gateway runs with no webhook endpoint subscribed: the Go original's work per payment.
WITHOUT_WEBHOOKS = "gateway 4242 without webhooks"


@dataclass(frozen=True)
class Latency:
    """wrk's latency distribution of one run, in milliseconds."""

    p50: float
    p75: float
    p90: float
    p99: float
    p99_9: Annotated[float, Field(alias="p99.9")]
    mean: float
    max: float


@dataclass(frozen=True)
class RunResult:
    name: str
    target: ServiceName
    mode: LoadMode
    connections: int
    duration_s: float
    sent: int
    responses: int
    ok_2xx: int
    non_2xx: int
    unanswered: int
    statuses: Mapping[str, int]  # answers per HTTP status code
    socket_errors: Mapping[str, int]  # connect/read/write/timeout
    per_second: float  # 2xx answers per second (payments/s for the gateway)
    latency_ms: Latency
    # Payment rows the run created: the 2xx answers plus the requests wrk cut off at the end
    # that the gateway still completed. The denominator of the per-payment costs below.
    payments_created: int | None
    cpu_ms_per_request: Mapping[str, float]  # per service, "mariadb" and "wrk"
    machine_busy_pct: float  # all cores busy = 100
    background_cpu_pct: float  # share of all cores used by processes outside the benchmark
    db_statements: int | None
    db_round_trips_per_payment: float | None
    db_other_clients_statements: int | None
    db_count_method: CountMethod | None
    rss_peak_mib: Mapping[str, float]  # per process label
    worker_restarts: bool

    @property
    def total_socket_errors(self) -> int:
        return sum(self.socket_errors.values())


@dataclass(frozen=True)
class Integrity:
    payment_rows: int
    answered_2xx: int
    answered_non_2xx: int
    unanswered: int  # sent but not answered (in flight when wrk stopped): may or may not be rows
    statuses: Mapping[str, int]  # payment statuses in the database after settling
    settled: bool  # no payment left in init/processing
    verdict: Verdict

    @property
    def ok(self) -> bool:
        return self.verdict in ("exact", "ok")


@dataclass(frozen=True)
class MemoryRow:
    process: str
    after_warmup_mib: float
    start_mib: float  # at the start of the soak (or of the first measured run)
    end_mib: float
    peak_mib: float
    hwm_mib: float  # VmHWM: the kernel's high-water mark over the process's life
    growth_pct: float  # end vs. after warm-up
    flag: str


@dataclass(frozen=True)
class TargetCheck:
    target: str  # what is required, e.g. "p99 at c64 < 150 ms"
    value: str  # what was measured, formatted
    met: bool


@dataclass(frozen=True)
class LogMessage:
    message: str
    count: int


@dataclass(frozen=True)
class LogSummary:
    """Warning/error lines and tracebacks in one service log, with the commonest messages."""

    file: str  # relative to the repository
    warning: int
    error: int
    traceback: int
    messages: tuple[LogMessage, ...]


@dataclass(frozen=True)
class Machine:
    cpu: str
    cores: int
    ram_gib: float
    kernel: str
    os: str
    python: str
    mariadb: str
    wrk: str
    git: str  # short revision, "+ uncommitted changes" when the services' code was dirty


@dataclass(frozen=True)
class Ratios:
    gateway_over_bare: float | None
    gateway_over_bank: float | None


@dataclass(frozen=True)
class MerchantLoad:
    """One merchant's wrk run in the fair-use measurement."""

    merchant: str  # which demo merchant: "first" or "second"
    connections: int
    delay_ms: int  # each connection's pause before its next request; 0: as fast as it can
    duration_s: float
    sent: int
    responses: int
    statuses: Mapping[str, int]  # answers per HTTP status code
    unexpected: int  # answers with a status other than the expected ones (2xx; and 429 flooding)
    socket_errors: Mapping[str, int]  # connect/read/write/timeout
    ok_per_second: float  # 2xx answers per second
    limited_per_second: float  # 429 answers per second
    latency_ms: Latency  # of every answer, 429s included


@dataclass(frozen=True)
class FairUseRun:
    """A gateway with rate limits on: the second merchant alone, then beside a flooding first."""

    storage: RateLimitStorage
    rate_limit_per_second: int
    rate_limit_burst: int
    quiet: MerchantLoad  # the second merchant alone
    flooded: MerchantLoad  # the second merchant while the first floods
    flooder: MerchantLoad  # the first merchant, over the whole flood
    p99_ratio: float  # flooded p99 / quiet p99
    gateway_cpu_ms_per_answer_quiet: float
    gateway_cpu_ms_per_answer_flood: float  # mostly 429s
    machine_busy_pct_quiet: float  # all cores busy = 100
    machine_busy_pct_flood: float
    background_cpu_pct: float  # the higher of the two phases
    # RATE_LIMIT_MAX_IN_FLIGHT (per worker, for a key refused within its window); results
    # from before that cap was on by default have 0 (off).
    rate_limit_max_in_flight: int = 0


@dataclass(frozen=True)
class FairUse:
    runs: tuple[FairUseRun, ...]
    targets: tuple[TargetCheck, ...]  # issue 8: the other merchant's p99 under a flood


@dataclass(frozen=True)
class ListingRun:
    """wrk against one listing query of the first demo merchant."""

    name: str  # e.g. "first page", "deep page (846,000 rows in)"
    query: str  # the path and query string requested
    connections: int
    duration_s: float
    responses: int
    non_2xx: int
    socket_errors: int
    per_second: float  # 2xx answers (pages) per second
    latency_ms: Latency
    gateway_cpu_ms_per_page: float  # the gateway's workers
    mariadb_cpu_ms_per_page: float
    background_cpu_pct: float  # share of all cores used by processes outside the benchmark


@dataclass(frozen=True)
class PlanRow:
    """One row of MariaDB's EXPLAIN."""

    table: str
    access: str  # EXPLAIN's "type": const, eq_ref, ref, range, index, ALL
    key: str | None  # the index used
    used_key_parts: tuple[str, ...]  # the index's columns the access bounds (EXPLAIN JSON)
    rows: int  # the optimizer's estimate of rows read (before LIMIT cuts the read short)
    extra: str  # "Using where", "Using filesort", ...
    rows_read: float | None = None  # rows actually read per access (ANALYZE's r_rows)


@dataclass(frozen=True)
class QueryPlan:
    name: str  # the listing run it belongs to
    sql: str  # the statement the gateway sends for that page, with its values
    bounded_by: tuple[str, ...]  # the columns the statement bounds: the index must use them
    rows: tuple[PlanRow, ...]


@dataclass(frozen=True)
class Listing:
    """Issue 10: pages of payments over a bulk-loaded table, and how MariaDB reads them."""

    rows_loaded: int  # payments bulk-loaded (each with its card), for four merchants
    merchant_rows: int  # of which the listed merchant's
    load_seconds: float
    page_size: int
    runs: tuple[ListingRun, ...]
    plans: tuple[QueryPlan, ...]
    targets: tuple[TargetCheck, ...]


@dataclass(frozen=True)
class ClusterRun:
    """Three gateway replicas under three wrk runs at once, on one database configuration."""

    name: str  # "single server" or "Galera, 3 nodes"
    nodes: int  # mariadbd processes
    replicas: int
    connections: int  # over all three wrk runs
    duration_s: float
    responses: int
    non_2xx: int
    socket_errors: int
    per_second: float  # 2xx answers (payments) per second, all replicas
    latency_ms: Latency  # p50/p75/mean: mean of the three runs; p90 and above: the worst
    gateway_cpu_ms_per_payment: float  # the three replicas
    mariadb_cpu_ms_per_payment: float  # every mariadbd of the configuration
    background_cpu_pct: float  # share of all cores used by processes outside the benchmark


@dataclass(frozen=True)
class Galera:
    """Issue 15: payments on a 3-node Galera cluster against a single server, same session."""

    cluster_start_s: float
    runs: tuple[ClusterRun, ...]  # single server, then Galera
    payments_per_second_ratio: float  # Galera / single server
    node_settings: Mapping[str, str]  # the cluster nodes' replication-relevant variables


@dataclass(frozen=True)
class DeliveryLag:
    """From an event's ``created_at`` (its state change) to its first arrival at the
    receiver, in milliseconds, over every delivered event."""

    p50: float
    p99: float
    max: float
    mean: float


@dataclass(frozen=True)
class WebhookDelivery:
    """Issue 11: the headline gateway's one subscribed endpoint and what reached it."""

    endpoints: int  # subscribed endpoints (enabled_events ["*"]) of the first demo merchant
    events: int  # events in the database after the runs (every path: requests, reconciler)
    received_requests: int  # webhook requests the receiver answered
    delivered: int  # events that reached the receiver at least once
    undelivered: int  # events that never reached it (by the end of the wait)
    duplicates: int  # requests beyond the first for an event (at least once)
    unknown: int  # webhook-ids received that are not events of the database
    invalid_signatures: int  # requests the standardwebhooks verifier refused
    verified: Literal["all", "sample"]  # which requests the receiver verified
    lag_ms: DeliveryLag
    waited_s: float  # how long after the integrity check until the receiver had them all
    missing_sample: tuple[str, ...]  # a few undelivered event ids
    targets: tuple[TargetCheck, ...]


@dataclass(frozen=True)
class Report:
    date: str  # ISO 8601, UTC, seconds
    elapsed_s: float
    quick: bool
    options: Options
    machine: Machine
    environment: Mapping[str, str]  # the gateway's, with the database password redacted
    runs: tuple[RunResult, ...]  # against the gateway
    limits: tuple[RunResult, ...]  # the reference limit: bank alone, bare endpoint
    ratios: Ratios
    integrity: Integrity | None  # None when the headline runs were not selected (--only)
    memory_kind: MemoryKind  # the memory table covers the soak, or the gateway runs
    memory: tuple[MemoryRow, ...]
    targets: tuple[TargetCheck, ...]
    logs: tuple[LogSummary, ...]
    fair_use: FairUse | None = None  # results from before the fair-use run have none
    listing: Listing | None = None  # results from before the listing run have none
    galera: Galera | None = None  # results from before the Galera run have none
    webhooks: WebhookDelivery | None = None  # results from before issue 11 have none


_REPORT = TypeAdapter(Report)


def report_from_json(text: str) -> Report:
    return _REPORT.validate_json(text)


def report_to_json(report: Report) -> str:
    """The report as the bench writes it: indented, keys in field order, newline-terminated."""
    data = _REPORT.dump_python(report, mode="json", by_alias=True, exclude_defaults=True)
    return json.dumps(data, indent=2) + "\n"


def load_report(path: Path) -> Report:
    return report_from_json(path.read_text())
