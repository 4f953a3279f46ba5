"""The listing run's parts that need no database: its ids, its targets, its section of the
report (typed, JSON and Markdown), and --only listing."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from bench.listing import _uuid7, check_listing_targets, plan_is_keyset
from bench.markdown import render_markdown
from bench.options import parse_args
from bench.report import result_names
from bench.results import (
    Latency,
    Listing,
    ListingRun,
    PlanRow,
    QueryPlan,
    Report,
    report_from_json,
    report_to_json,
)

CARDS_ROW = PlanRow("cards", "eq_ref", "PRIMARY", ("id",), 1, "")
DEEP = ("merchant_id", "created_at")


def run(name: str, p50: float, *, non_2xx: int = 0) -> ListingRun:
    return ListingRun(
        name=name,
        query="/api/v1/payments?limit=100",
        connections=16,
        duration_s=15.0,
        responses=3000,
        non_2xx=non_2xx,
        socket_errors=0,
        per_second=200.0,
        gateway_cpu_ms_per_page=8.5,
        mariadb_cpu_ms_per_page=0.75,
        background_cpu_pct=3.0,
        latency_ms=Latency(
            p50=p50, p75=p50, p90=p50 * 1.5, p99=p50 * 3, p99_9=p50 * 4, mean=p50, max=p50 * 5
        ),
    )


def plan(
    name: str,
    access: str = "range",
    extra: str = "Using where",
    key: str | None = None,
    parts: tuple[str, ...] = DEEP,
    bounded_by: tuple[str, ...] = DEEP,
) -> QueryPlan:
    payments = PlanRow(
        "payments", access, key or "ix_payments_merchant_id_created_at", parts, 101, extra
    )
    return QueryPlan(name, "SELECT …", bounded_by, (payments, CARDS_ROW))


def listing(deep_p50: float = 11.0, plans: tuple[QueryPlan, ...] | None = None) -> Listing:
    runs = (
        run("first page", 10.0),
        run("deep page (846,000 rows in)", deep_p50),
        run("status=failed", 12.0),
    )
    plans = plans or (
        plan("first page"),
        plan("deep page (846,000 rows in)"),
        plan("status=failed"),
    )
    return Listing(
        rows_loaded=1_000_000,
        merchant_rows=940_000,
        load_seconds=250.0,
        page_size=100,
        runs=runs,
        plans=plans,
        targets=check_listing_targets(runs, plans),
    )


def test_generated_ids_are_uuid7_ascending_with_time_and_unique() -> None:
    at = datetime(2026, 11, 25, 12, tzinfo=UTC)
    ids = [_uuid7(at, 5), _uuid7(at, 6), _uuid7(at + timedelta(milliseconds=1), 0)]

    assert all(uuid.UUID(value).version == 7 for value in ids)
    assert all(uuid.UUID(value).variant == uuid.RFC_4122 for value in ids)
    assert ids == sorted(ids)
    assert len(set(ids)) == 3


@pytest.mark.parametrize(
    ("access", "extra", "key", "parts", "keyset"),
    [
        ("range", "Using where", None, DEEP, True),
        ("ref", "", "ix_payments_merchant_id_status_created_at_id", (*DEEP, "status"), True),
        # MariaDB's own choice for a deep page: the merchant prefix alone, filtering the rest.
        ("ref", "Using where", None, ("merchant_id",), False),
        ("range", "Using where; Using filesort", None, DEEP, False),
        ("ALL", "Using where", None, (), False),
        ("range", "", "ix_payments_created_at", ("created_at",), False),
        ("range", "Using temporary", None, DEEP, False),
    ],
)
def test_a_plan_is_keyset_only_on_a_bounded_merchant_index_range_without_sorting(
    access: str, extra: str, key: str | None, parts: tuple[str, ...], keyset: bool
) -> None:
    assert plan_is_keyset(plan("page", access, extra, key, parts)) is keyset


def test_the_first_page_needs_only_the_merchant_bound() -> None:
    first = plan("first page", "ref", parts=("merchant_id",), bounded_by=("merchant_id",))
    assert plan_is_keyset(first)


def test_a_deep_page_must_cost_about_what_the_first_does() -> None:
    met = {t.target: t.met for t in listing(deep_p50=14.0).targets}
    missed = {t.target: t.met for t in listing(deep_p50=40.0).targets}

    assert met["deep page p50 <= 1.5x first page p50"]
    assert not missed["deep page p50 <= 1.5x first page p50"]


def test_a_filesort_misses_the_plan_target() -> None:
    plans = (plan("first page"), plan("deep", extra="Using filesort"), plan("status"))
    targets = {t.target: t for t in listing(plans=plans).targets}

    target = targets[
        "every plan: a merchant-first index range over the bounded columns, no filesort"
    ]
    assert not target.met


def test_the_listing_section_goes_through_json_and_markdown(soak_report: Report) -> None:
    report = dataclasses.replace(soak_report, listing=listing())

    assert report_from_json(report_to_json(report)) == report
    lines = render_markdown(report).splitlines()
    start = lines.index("### Listing payments (issue 10)")
    assert lines[start + 2].startswith("1,000,000 payments bulk-loaded with their cards in 250 s")
    assert (
        "| deep page (846,000 rows in) | 200 | 11.0 | 16.5 | 33.0 | 0 | 0 | 8.50 | 0.75 | 3 % |"
    ) in lines
    assert (
        "| payments | range | ix_payments_merchant_id_created_at | merchant_id, created_at "
        "| 101 | - | Using where |"
    ) in lines
    assert "| deep page p50 <= 1.5x first page p50 | 1.10x (10.0 -> 11.0 ms) | yes |" in lines


def test_a_stored_result_without_listing_has_no_such_section(soak_report: Report) -> None:
    assert soak_report.listing is None
    assert "Listing payments" not in render_markdown(soak_report)
    assert '"listing"' not in report_to_json(soak_report)


def test_only_listing_has_its_own_result_files(soak_report: Report) -> None:
    options = parse_args(["--only", "listing"])
    assert options.only == "listing"
    partial = dataclasses.replace(soak_report, options=options, quick=False)
    assert result_names(partial) == ["latest-listing"]


def test_a_run_that_got_no_answer_misses_its_targets() -> None:
    silent = dataclasses.replace(
        run("deep page", 0.0), responses=0, per_second=0.0, latency_ms=Latency(0, 0, 0, 0, 0, 0, 0)
    )
    runs = (run("first page", 10.0), silent, run("status=failed", 12.0))
    plans = (plan("first page"), plan("deep"), plan("status"))

    met = {t.target: t.met for t in check_listing_targets(runs, plans)}

    assert not met["deep page p50 <= 1.5x first page p50"]
    assert not met["every run answered, zero errors (non-2xx + socket errors)"]


def test_a_noisy_listing_run_gets_a_note(soak_report: Report) -> None:
    noisy = listing()
    runs = (noisy.runs[0], dataclasses.replace(noisy.runs[1], background_cpu_pct=35.0))
    markdown = render_markdown(
        dataclasses.replace(soak_report, listing=dataclasses.replace(noisy, runs=runs))
    )

    assert (
        "- 'listing, deep page (846,000 rows in)': processes outside the benchmark used 35 %"
        in markdown
    )
    assert "'listing, first page'" not in markdown
