"""The report of a benchmark: the targets checked, the ratios, and the files written."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path

from bench.memory import MAX_RSS_GROWTH, MAX_WORKER_RSS_MIB
from bench.options import Options
from bench.paths import RESULTS_DIR
from bench.results import (
    WITHOUT_WEBHOOKS,
    FairUse,
    FairUseRun,
    Galera,
    Integrity,
    Listing,
    LogSummary,
    Machine,
    MemoryKind,
    MemoryRow,
    Ratios,
    Report,
    RunResult,
    TargetCheck,
    WebhookDelivery,
    report_to_json,
)

# The targets of issue 5, checked against the c64 all-4242 run.
TARGET_PAYMENTS_PER_SECOND = 1000
TARGET_P99_MS = 150
TARGET_CPU_MS_PER_PAYMENT = 1.0
TARGET_BARE_FRACTION = 1 / 16
STRETCH_PAYMENTS_PER_SECOND = 1750
# Issue 13: the Go original's level on the same machine, against the bare endpoint (c64).
TARGET_BARE_FRACTION_AT = {16: 0.15, 64: 0.14}
MAX_CPU_OVER_BARE = 4.0
# Issue 8: a merchant flooding the gateway leaves another's p99 within this factor of its
# figure on a quiet gateway.
MAX_FLOODED_P99_RATIO = 2


def build_report(
    options: Options,
    machine: Machine,
    runs: Sequence[RunResult],
    limits: Sequence[RunResult],
    integrity: Integrity | None,
    memory: Sequence[MemoryRow],
    memory_kind: MemoryKind,
    logs: Sequence[LogSummary],
    environment: Mapping[str, str],
    started: datetime,
    elapsed_s: float,
    fair_use: Sequence[FairUseRun] | None = None,
    listing: Listing | None = None,
    galera: Galera | None = None,
    webhooks: WebhookDelivery | None = None,
) -> Report:
    """The report; ``runs``, ``limits`` and ``integrity`` are empty (None) with --only, and
    ``fair_use`` and ``listing`` are None when their runs were not made."""
    return Report(
        date=started.isoformat(timespec="seconds"),
        elapsed_s=round(elapsed_s, 1),
        quick=options.quick,
        options=options,
        machine=machine,
        environment=environment,
        runs=tuple(runs),
        limits=tuple(limits),
        ratios=ratios(runs, limits),
        integrity=integrity,
        memory_kind=memory_kind,
        memory=tuple(memory),
        targets=check_targets(runs, limits, integrity, memory, memory_kind) if integrity else (),
        logs=tuple(logs),
        fair_use=None
        if fair_use is None
        else FairUse(tuple(fair_use), check_fair_use_targets(fair_use)),
        listing=listing,
        galera=galera,
        webhooks=webhooks,
    )


def headline_run(runs: Sequence[RunResult]) -> RunResult:
    """The run the targets are checked against: the gateway, all-4242, at c64."""
    return next(
        r for r in runs if r.target == "gateway" and r.mode == "payments" and r.connections == 64
    )


def ratios(runs: Sequence[RunResult], limits: Sequence[RunResult]) -> Ratios:
    if not runs:
        return Ratios(gateway_over_bare=None, gateway_over_bank=None)
    headline = headline_run(runs)
    bare = next((r for r in limits if r.target == "bare"), None)
    bank = next((r for r in limits if r.target == "bank"), None)
    return Ratios(
        gateway_over_bare=headline.per_second / bare.per_second if bare else None,
        gateway_over_bank=headline.per_second / bank.per_second if bank else None,
    )


def check_targets(
    runs: Sequence[RunResult],
    limits: Sequence[RunResult],
    integrity: Integrity,
    memory: Sequence[MemoryRow],
    memory_kind: MemoryKind,
) -> tuple[TargetCheck, ...]:
    headline = headline_run(runs)
    bare = next((r for r in limits if r.target == "bare"), None)
    gateway_runs = [r for r in runs if r.target == "gateway"]
    workers_peak = max(
        (mib for r in gateway_runs for label, mib in r.rss_peak_mib.items() if " worker " in label),
        default=0.0,
    )
    targets = [
        TargetCheck(
            f"payments/s at c64 >= {TARGET_PAYMENTS_PER_SECOND:,}",
            f"{headline.per_second:,.0f}",
            headline.per_second >= TARGET_PAYMENTS_PER_SECOND,
        ),
        TargetCheck(
            f"p99 at c64 < {TARGET_P99_MS} ms",
            f"{headline.latency_ms.p99:.1f} ms",
            headline.latency_ms.p99 < TARGET_P99_MS,
        ),
        TargetCheck(
            "zero errors (non-2xx + socket errors, all gateway runs)",
            str(sum(r.non_2xx + r.total_socket_errors for r in gateway_runs)),
            all(r.non_2xx == 0 and r.total_socket_errors == 0 for r in gateway_runs),
        ),
        TargetCheck(
            f"gateway CPU <= {TARGET_CPU_MS_PER_PAYMENT} ms/payment at c64",
            f"{headline.cpu_ms_per_request['gateway']:.2f} ms",
            headline.cpu_ms_per_request["gateway"] <= TARGET_CPU_MS_PER_PAYMENT,
        ),
    ]
    if bare:
        targets.append(
            TargetCheck(
                "payments/s >= 1/16 of the bare endpoint's requests/s",
                f"1/{bare.per_second / headline.per_second:.1f}",
                headline.per_second >= bare.per_second * TARGET_BARE_FRACTION,
            )
        )
        targets += against_the_bare_endpoint(runs, bare)
    targets += [
        TargetCheck(
            "nothing lost, no duplicates (payment rows vs 2xx answers)",
            integrity.verdict,
            integrity.ok,
        ),
        TargetCheck(
            f"gateway worker RSS < {MAX_WORKER_RSS_MIB} MiB",
            f"{workers_peak:.0f} MiB peak",
            workers_peak < MAX_WORKER_RSS_MIB,
        ),
    ]
    if memory_kind == "soak":
        worst = max(memory, key=lambda row: row.growth_pct)
        targets.append(
            TargetCheck(
                f"RSS growth <= {MAX_RSS_GROWTH:.0%} over the soak (every process)",
                f"{worst.growth_pct:+.1f} % ({worst.process})",
                all(row.growth_pct <= MAX_RSS_GROWTH * 100 for row in memory),
            )
        )
    targets.append(
        TargetCheck(
            f"stretch: payments/s at c64 >= {STRETCH_PAYMENTS_PER_SECOND:,}",
            f"{headline.per_second:,.0f}",
            headline.per_second >= STRETCH_PAYMENTS_PER_SECOND,
        )
    )
    return tuple(targets)


def against_the_bare_endpoint(runs: Sequence[RunResult], bare: RunResult) -> list[TargetCheck]:
    """Issue 13's targets, for each all-4242 run at a load it names: payments/s as a share of
    the bare endpoint's requests/s, and gateway CPU per payment as a multiple of its CPU per
    request. Checked for the headline runs (webhook endpoint subscribed) and for the runs
    without webhooks (the Go original's work per payment), each named."""
    bare_cpu = bare.cpu_ms_per_request["bare"]
    targets = []
    for run in runs:
        fraction = TARGET_BARE_FRACTION_AT.get(run.connections)
        if not run.name.startswith("gateway 4242") or fraction is None:  # not the soak
            continue
        share = run.per_second / bare.per_second
        cpu = run.cpu_ms_per_request["gateway"] / bare_cpu
        without = ", without webhooks" if run.name.startswith(WITHOUT_WEBHOOKS) else ""
        targets += [
            TargetCheck(
                f"payments/s at c{run.connections}{without} >= {fraction:.2f} x bare endpoint",
                f"{share:.3f} x",
                share >= fraction,
            ),
            TargetCheck(
                f"gateway CPU/payment at c{run.connections}{without} <= "
                f"{MAX_CPU_OVER_BARE:.0f} x bare CPU/request",
                f"{cpu:.1f} x",
                cpu <= MAX_CPU_OVER_BARE,
            ),
        ]
    return targets


def check_fair_use_targets(runs: Sequence[FairUseRun]) -> tuple[TargetCheck, ...]:
    return tuple(
        TargetCheck(
            f"other merchant's p99 under flood <= {MAX_FLOODED_P99_RATIO}x quiet "
            f"({run.storage} counters)",
            f"{run.p99_ratio:.2f}x ({run.quiet.latency_ms.p99:.1f} -> "
            f"{run.flooded.latency_ms.p99:.1f} ms)",
            run.p99_ratio <= MAX_FLOODED_P99_RATIO,
        )
        for run in runs
    )


def result_names(report: Report) -> list[str]:
    """A quick run only replaces latest-quick, a partial one (--only) latest-<part>; a full
    one replaces latest and keeps a timestamped copy."""
    if report.quick:
        return ["latest-quick"]
    if report.options.only == "galera":  # kept: the measured cost of replication
        stamp = datetime.fromisoformat(report.date).strftime("%Y%m%dT%H%M%SZ")
        return ["latest-galera", f"{stamp}-galera"]
    if report.options.only:
        return [f"latest-{report.options.only}"]
    return ["latest", datetime.fromisoformat(report.date).strftime("%Y%m%dT%H%M%SZ")]


def write_results(report: Report, markdown: str, directory: Path = RESULTS_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    payload = report_to_json(report)
    written = []
    for name in result_names(report):
        for suffix, text in ((".md", markdown), (".json", payload)):
            path = directory / f"{name}{suffix}"
            path.write_text(text)
            written.append(path)
    return written
