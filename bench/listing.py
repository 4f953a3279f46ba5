"""The listing run (issue 10): does a page of payments cost the same at row 10 and row 900,000?

A gateway of its own over the benchmark database, into which 1,000,000 payments (50,000 with
``--quick``) and their cards are bulk-loaded with multi-row INSERTs — not posted one by one —
for four merchants, interleaved in time, the first demo merchant holding most of them. Then
``GET /api/v1/payments?limit=100`` is measured with wrk: the first page, a page ``starting_after``
a payment 90 % of the way into the merchant's payments, and the first page with a status
filter. The query plans MariaDB chooses for the very statements the gateway sends
(``EXPLAIN``) go into the report: each must read a range of an index that starts with the
merchant, with no filesort and no full scan.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from payment_gateway.domain.payment import PaymentStatus
from payment_gateway.service.ports import ListPosition, PaymentFilters
from payment_gateway.storage.repositories import listing_statement
from sqlalchemy.dialects import mysql

from bench.mariadb import BenchDatabase
from bench.measurement import PAYMENTS_PATH, CpuSnapshot, CpuUsage, Harness
from bench.progress import log
from bench.results import Listing, ListingRun, PlanRow, QueryPlan, TargetCheck
from bench.services import Service, start_service, stop_service, wait_until_ready
from bench.wrk import FIRST_MERCHANT_TOKEN, WrkResult, run_wrk

FULL_ROWS = 1_000_000
QUICK_ROWS = 50_000
# Of every 50 payments, 47 are the first demo merchant's and one each the other three's.
CYCLE = ("merchant_one",) * 47 + ("merchant_two", "bench_shop_a", "bench_shop_b")
DEEP_FRACTION = 0.9  # the deep page starts this far into the first merchant's payments
PAGE = 100
# A few clients paging at once: enough to keep both workers busy, few enough that the latency
# is the cost of a page rather than the queue in front of it.
CONNECTIONS = 4
BATCH = 5_000
# Every payment within the last days: older terminal ones would have their card data erased
# by the retention job (CARD_DATA_RETENTION_DAYS, 30) while the runs are measured.
SPAN = timedelta(days=20)
# Of every 100 payments: 90 succeeded, 7 failed, 3 still processing.
STATUSES = ("succeeded",) * 90 + ("failed",) * 7 + ("processing",) * 3
OUTCOMES = {  # status -> code and decline_reason, as SQL literals
    "succeeded": ("'0'", "NULL"),
    "failed": ("'100'", "'insufficient_funds'"),
    "processing": ("'200'", "NULL"),
}
FILTERED_STATUS = PaymentStatus.FAILED
MAX_DEEP_OVER_FIRST_P50 = 1.5


def measure_listing(
    harness: Harness, db: BenchDatabase, gateway_environment: Mapping[str, str]
) -> Listing:
    options = harness.options
    total = QUICK_ROWS if options.quick else FULL_ROWS
    name = "gateway-listing"
    environment = dict(gateway_environment)
    harness.services[name] = service = start_service(
        name, "payment_gateway.main:app", workers=options.gateway_workers, env=environment
    )
    try:
        wait_until_ready(service, workers=options.gateway_workers)  # migrated and seeded
        merchants = _merchants(db)
        log(f"listing: bulk-loading {total:,} payments and their cards")
        load_seconds = _bulk_load(db, merchants, total)
        own = merchants["merchant_one"]
        merchant_rows = int(
            db.admin.query(
                f"SELECT COUNT(*) FROM `{db.name}`.payments WHERE merchant_id = %s",  # noqa: S608
                (own,),
            )[0][0]
        )
        deep = _payment_at(db, own, int(merchant_rows * DEEP_FRACTION))
        queries = {
            "first page": ({}, PaymentFilters(), None),
            f"deep page ({int(merchant_rows * DEEP_FRACTION):,} rows in)": (
                {"starting_after": deep.id},
                PaymentFilters(),
                deep,
            ),
            f"status={FILTERED_STATUS.value}": (
                {"status": FILTERED_STATUS.value},
                PaymentFilters(status=FILTERED_STATUS),
                None,
            ),
        }
        plans = tuple(
            _plan(db, label, own, filters, cursor)
            for label, (_, filters, cursor) in queries.items()
        )
        runs = tuple(
            _run(harness, service, label, query) for label, (query, _, _) in queries.items()
        )
    finally:
        stop_service(service)
    return Listing(
        rows_loaded=total,
        merchant_rows=merchant_rows,
        load_seconds=round(load_seconds, 1),
        page_size=PAGE,
        runs=runs,
        plans=plans,
        targets=check_listing_targets(runs, plans),
    )


def _merchants(db: BenchDatabase) -> dict[str, str]:
    """Merchant name -> id: the two demo merchants and two more made here."""
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
    for shop in ("bench_shop_a", "bench_shop_b"):
        db.admin.query(
            f"INSERT INTO `{db.name}`.merchants (id, name, created_at) VALUES (%s, %s, %s)",  # noqa: S608
            (_uuid7(datetime.now(UTC), secrets.randbits(62)), shop, now),
        )
    rows = db.admin.query(f"SELECT name, id FROM `{db.name}`.merchants")  # noqa: S608
    return {str(name): str(merchant_id) for name, merchant_id in rows}


def _uuid7(at: datetime, sequence: int) -> str:
    """A UUIDv7 for ``at`` (its milliseconds first, so ids ascend with time), made unique by
    ``sequence`` instead of random bits: rows go in at the end of the primary key."""
    millis = int(at.timestamp() * 1000)
    text = f"{millis:012x}7{(sequence >> 50) & 0xFFF:03x}{8 | ((sequence >> 48) & 3):x}"
    text += f"{sequence & 0xFFFFFFFFFFFF:015x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:32]}"


@dataclass(frozen=True)
class _Generated:
    card: str
    payment: str


def _rows(merchants: Mapping[str, str], total: int, run: int) -> Iterator[_Generated]:
    """The value tuples of each payment and its card, oldest first, as SQL literals."""
    start = datetime.now(UTC) - SPAN - timedelta(hours=1)
    step = SPAN / total
    for n in range(total):
        at = start + step * n
        merchant = merchants[CYCLE[n % len(CYCLE)]]
        stamp = at.strftime("%Y-%m-%d %H:%M:%S.%f")
        card_id = _uuid7(at, run + 2 * n)
        payment_id = _uuid7(at, run + 2 * n + 1)
        status = STATUSES[(n * 7) % len(STATUSES)]
        code, reason = OUTCOMES[status]
        yield _Generated(
            f"('{card_id}','{merchant}','','4242','visa',12,2042,'{stamp}')",
            f"('{payment_id}','{merchant}','{card_id}','{status}',{1000 + n % 9000},'USD',"
            f"'order-{n}',{code},{reason},'{stamp}','{stamp}',0)",
        )


def _bulk_load(db: BenchDatabase, merchants: Mapping[str, str], total: int) -> float:
    """Multi-row INSERTs of BATCH rows each, cards then payments; the seconds it took."""
    began = time.monotonic()
    run = secrets.randbits(40) << 21  # ids unlike those of any other run
    # Every value is generated here (no outside input): the rows are SQL literals.
    cards_sql = (
        f"INSERT INTO `{db.name}`.cards (id, merchant_id, pan_encrypted, last4, brand, "  # noqa: S608
        "expiry_month, expiry_year, created_at) VALUES "
    )
    payments_sql = (
        f"INSERT INTO `{db.name}`.payments (id, merchant_id, card_id, status, amount, currency, "  # noqa: S608
        "reference, code, decline_reason, created_at, updated_at, attempts) VALUES "
    )
    batch: list[_Generated] = []
    loaded = 0
    for row in _rows(merchants, total, run):
        batch.append(row)
        if len(batch) == BATCH:
            loaded += _insert(db, cards_sql, payments_sql, batch)
            batch = []
            if loaded % 100_000 == 0:
                log(f"  {loaded:,} payments loaded")
    if batch:
        _insert(db, cards_sql, payments_sql, batch)
    db.admin.query(f"ANALYZE TABLE `{db.name}`.cards, `{db.name}`.payments")
    return time.monotonic() - began


def _insert(db: BenchDatabase, cards_sql: str, payments_sql: str, batch: list[_Generated]) -> int:
    db.admin.query(cards_sql + ",".join(row.card for row in batch))
    db.admin.query(payments_sql + ",".join(row.payment for row in batch))
    return len(batch)


def _payment_at(db: BenchDatabase, merchant_id: str, offset: int) -> ListPosition:
    """The merchant's payment ``offset`` rows from the newest: the deep page's cursor. (The
    harness may use OFFSET once to find it; the gateway never does.)"""
    row = db.admin.query(
        f"SELECT created_at, id FROM `{db.name}`.payments WHERE merchant_id = %s "  # noqa: S608
        "ORDER BY created_at DESC, id DESC LIMIT 1 OFFSET %s",
        (merchant_id, offset),
    )[0]
    return ListPosition(row[0].replace(tzinfo=UTC), str(row[1]))


def _plan(
    db: BenchDatabase,
    label: str,
    merchant_id: str,
    filters: PaymentFilters,
    cursor: ListPosition | None,
) -> QueryPlan:
    """EXPLAIN of the statement the gateway sends for this page (PAGE + 1 rows: has_more)."""
    statement = listing_statement(merchant_id, filters, PAGE + 1, cursor, None)
    sql = str(statement.compile(dialect=mysql.dialect(), compile_kwargs={"literal_binds": True}))
    db.admin.query(f"USE `{db.name}`")
    # id, select_type, table, type, possible_keys, key, key_len, ref, rows, Extra
    table_rows = db.admin.query("EXPLAIN " + sql)
    # ANALYZE runs the statement and names the key parts used and the rows read: a range
    # bounded by merchant_id alone reads the merchant's payments from the newest to the cursor.
    analyzed = {
        str(table["table_name"]): table
        for table in _tables(json.loads(db.admin.query("ANALYZE FORMAT=JSON " + sql)[0][0]))
    }
    rows = tuple(
        PlanRow(
            table=str(r[2]),
            access=str(r[3]),
            key=None if r[5] is None else str(r[5]),
            used_key_parts=tuple(analyzed.get(str(r[2]), {}).get("used_key_parts", ())),
            rows=int(r[8] or 0),
            extra=str(r[9] or ""),
            rows_read=analyzed.get(str(r[2]), {}).get("r_rows"),
        )
        for r in table_rows
    )
    bounded_by: tuple[str, ...] = ("merchant_id",)
    if filters.status is not None:
        bounded_by += ("status",)
    if cursor is not None:
        bounded_by += ("created_at",)
    return QueryPlan(label, " ".join(sql.split()), bounded_by, rows)


def _tables(node: object) -> Iterator[dict[str, Any]]:
    """Every table access in an EXPLAIN FORMAT=JSON document."""
    if isinstance(node, dict):
        table = node.get("table")
        if isinstance(table, dict) and "table_name" in table:
            yield table
        for value in node.values():
            yield from _tables(value)
    elif isinstance(node, list):
        for value in node:
            yield from _tables(value)


def _run(harness: Harness, service: Service, label: str, query: Mapping[str, str]) -> ListingRun:
    url = f"{service.url}{PAYMENTS_PATH}?{urlencode({'limit': PAGE, **query})}"
    options = harness.options
    if options.warmup:
        _wrk(harness, url, f"warm-up listing {label}", options.warmup)
    log(f"listing: {label}, c{CONNECTIONS}, {options.duration} s")
    services = {service.name: service}
    before = CpuSnapshot.take(services, harness.mariadb_pid)
    result = _wrk(harness, url, f"listing {label}", options.duration)
    cpu = CpuUsage.between(before, CpuSnapshot.take(services, harness.mariadb_pid))
    pages = max(result.responses, 1)
    return ListingRun(
        name=label,
        query=url.removeprefix(service.url),
        connections=CONNECTIONS,
        duration_s=result.duration_s,
        responses=result.responses,
        non_2xx=result.non_2xx,
        socket_errors=sum(result.socket_errors.values()),
        per_second=result.ok_2xx / result.duration_s,
        latency_ms=result.latency_ms,
        gateway_cpu_ms_per_page=cpu.ms[service.name] / pages,
        mariadb_cpu_ms_per_page=cpu.ms["mariadb"] / pages,
        background_cpu_pct=cpu.background_pct,
    )


def _wrk(harness: Harness, url: str, label: str, seconds: int) -> WrkResult:
    return run_wrk(
        harness.wrk,
        url,
        "list",
        connections=CONNECTIONS,
        seconds=seconds,
        threads=harness.options.threads,
        label=label,
        token=FIRST_MERCHANT_TOKEN,
    )


def plan_is_keyset(plan: QueryPlan) -> bool:
    """The payments table is read as a range of a merchant-first index bounded by every
    column the statement bounds (the cursor's created_at included), with no sort."""
    payments = [row for row in plan.rows if row.table == "payments"]
    return bool(payments) and all(
        row.key is not None
        and row.key.startswith("ix_payments_merchant_id")
        and row.access in ("range", "ref")
        and set(plan.bounded_by) <= set(row.used_key_parts)
        and "filesort" not in row.extra.lower()
        and "temporary" not in row.extra.lower()
        for row in payments
    )


def check_listing_targets(
    runs: tuple[ListingRun, ...], plans: tuple[QueryPlan, ...]
) -> tuple[TargetCheck, ...]:
    first, deep = runs[0], runs[1]
    answered = first.responses > 0 and deep.responses > 0
    ratio = deep.latency_ms.p50 / first.latency_ms.p50 if answered else float("inf")
    return (
        TargetCheck(
            f"deep page p50 <= {MAX_DEEP_OVER_FIRST_P50}x first page p50",
            f"{ratio:.2f}x ({first.latency_ms.p50:.1f} -> {deep.latency_ms.p50:.1f} ms)",
            ratio <= MAX_DEEP_OVER_FIRST_P50,
        ),
        TargetCheck(
            "every plan: a merchant-first index range over the bounded columns, no filesort",
            ", ".join(f"{plan.name}: {_keys(plan)}" for plan in plans),
            all(plan_is_keyset(plan) for plan in plans),
        ),
        TargetCheck(
            "every run answered, zero errors (non-2xx + socket errors)",
            f"{sum(run.non_2xx + run.socket_errors for run in runs)} errors, "
            f"{min(run.responses for run in runs):,} answers in the slowest run",
            all(run.responses > 0 and run.non_2xx == 0 and run.socket_errors == 0 for run in runs),
        ),
    )


def _keys(plan: QueryPlan) -> str:
    return "/".join(
        f"{row.key or 'no index'} ({row.access} on {', '.join(row.used_key_parts) or '-'})"
        for row in plan.rows
    )
