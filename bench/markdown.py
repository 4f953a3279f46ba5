"""The report as Markdown (``results/*.md``, and what the benchmark prints at the end)."""

from __future__ import annotations

from collections.abc import Sequence

from bench.results import (
    WITHOUT_WEBHOOKS,
    FairUse,
    FairUseRun,
    Galera,
    Integrity,
    Listing,
    MemoryRow,
    Ratios,
    Report,
    RunResult,
    TargetCheck,
    Verdict,
    WebhookDelivery,
)

BACKGROUND_NOTE_PCT = 5  # note runs where other processes used more of the CPU
OTHER_CLIENTS_NOTE_SHARE = 0.05  # note runs where other database clients sent more statements

VERDICT_EXPLANATIONS: dict[Verdict, str] = {
    "exact": "(rows = 2xx answers + the requests cut off in flight).",
    "ok": "(every 2xx answer is a row; some requests cut off in flight never "
    "reached the database).",
    "LOST": "(fewer rows than 2xx answers: payments were lost!).",
    "EXTRA": "(more rows than requests sent: duplicate payments!).",
}


def render_markdown(report: Report) -> str:
    lines = _header(report)
    if report.runs:  # not with --only
        lines += [*_gateway_table(report.runs), *_limits_table(report.limits)]
        lines += _ratios(report.ratios)
    if report.integrity is not None:
        lines += _integrity(report.integrity)
    if report.webhooks is not None:
        lines += _webhooks(report.webhooks, report.runs)
    if report.fair_use is not None:
        lines += _fair_use(report.fair_use)
    if report.listing is not None:
        lines += _listing(report.listing)
    if report.galera is not None:
        lines += _galera(report.galera)
    if report.memory:
        lines += _memory_table(report)
    if report.targets:
        lines += ["", "### Targets (issue 5)", "", *_targets_table(report.targets)]
    notes = report_notes(report)
    if notes:
        lines += ["", "### Notes", "", *[f"- {note}" for note in notes]]
    lines += ["", f"Total benchmark time: {report.elapsed_s:.0f} s.", ""]
    return "\n".join(lines)


def _header(report: Report) -> list[str]:
    m = report.machine
    o = report.options
    return [
        "## Benchmark results" + (" (quick smoke run: not representative)" if report.quick else ""),
        "",
        f"{report.date} · {m.cpu} · {m.cores} cores · {m.ram_gib} GiB RAM · "
        f"{m.os}, kernel {m.kernel} · Python {m.python} · MariaDB {m.mariadb} · "
        f"{m.wrk} · git {m.git}",
        "",
        f"Everything on one machine over loopback: gateway ({o.gateway_workers} uvicorn "
        "workers, uvloop, httptools), bank simulator (1 worker), MariaDB and wrk "
        f"(`-t{o.threads}`, {o.duration} s per run after a {o.warmup} s warm-up).",
    ]


def _targets_table(targets: Sequence[TargetCheck]) -> list[str]:
    return [
        "| target | value | met |",
        "| --- | --- | --- |",
        *(f"| {t.target} | {t.value} | {'yes' if t.met else '**no**'} |" for t in targets),
    ]


def _gateway_table(runs: Sequence[RunResult]) -> list[str]:
    lines = [
        "",
        "### Gateway",
        "",
        "| run | conc. | payments/s | p50 ms | p90 ms | p99 ms | non-2xx | socket err. "
        "| gateway CPU ms/payment | bank CPU ms/payment | MariaDB CPU ms/payment "
        "| DB round trips/payment | peak RSS workers MiB | peak RSS bank MiB "
        "| background CPU |",
        "| --- |" + " ---: |" * 14,
    ]
    for r in runs:
        lat = r.latency_ms
        trips = r.db_round_trips_per_payment
        cpu = r.cpu_ms_per_request
        lines.append(
            f"| {r.name} | {r.connections} | {r.per_second:,.0f} | {lat.p50:.1f} "
            f"| {lat.p90:.1f} | {lat.p99:.1f} | {r.non_2xx} | {r.total_socket_errors} "
            f"| {cpu.get('gateway', 0):.2f} | {cpu.get('bank', 0):.2f} "
            f"| {cpu.get('mariadb', 0):.2f} | {'-' if trips is None else f'{trips:.2f}'} "
            f"| {_peaks(r, 'gateway worker')} | {_peaks(r, 'bank')} "
            f"| {r.background_cpu_pct:.0f} % |"
        )
    return lines


def _limits_table(limits: Sequence[RunResult]) -> list[str]:
    lines = [
        "",
        "### Reference limit on this machine (same uvicorn settings, same wrk, c64)",
        "",
        "| target | requests/s | p50 ms | p99 ms | non-2xx | socket err. | CPU ms/request "
        "| peak RSS MiB | background CPU |",
        "| --- |" + " ---: |" * 8,
    ]
    for r in limits:
        lat = r.latency_ms
        lines.append(
            f"| {r.name} | {r.per_second:,.0f} | {lat.p50:.1f} | {lat.p99:.1f} "
            f"| {r.non_2xx} | {r.total_socket_errors} "
            f"| {r.cpu_ms_per_request.get(r.target, 0):.2f} "
            f"| {_peaks(r, r.target)} | {r.background_cpu_pct:.0f} % |"
        )
    return lines


def _ratios(ratios: Ratios) -> list[str]:
    lines = [""]
    if ratios.gateway_over_bare is not None:
        lines.append(
            f"Gateway c64 / bare endpoint: **{ratios.gateway_over_bare:.3f}** "
            f"(1/{1 / ratios.gateway_over_bare:.1f})  "
        )
    if ratios.gateway_over_bank is not None:
        lines.append(
            f"Gateway c64 / bank simulator alone: **{ratios.gateway_over_bank:.3f}** "
            f"(1/{1 / ratios.gateway_over_bank:.1f})"
        )
    return lines


def _integrity(i: Integrity) -> list[str]:
    return [
        "",
        "### Nothing lost",
        "",
        f"Payment rows in the database: **{i.payment_rows:,}**; 2xx answers counted by wrk "
        f"(warm-up included): **{i.answered_2xx:,}**; requests still in flight when wrk "
        f"stopped: {i.unanswered:,}; non-2xx answers: {i.answered_non_2xx:,}. "
        f"Verdict: **{i.verdict}** " + VERDICT_EXPLANATIONS[i.verdict],
        "",
        "Statuses after settling: "
        + ", ".join(f"{status} {count:,}" for status, count in sorted(i.statuses.items()))
        + ("" if i.settled else " — **some payments were still open after 60 s**"),
    ]


def _webhooks(w: WebhookDelivery, runs: Sequence[RunResult]) -> list[str]:
    receiver_cpu = ", ".join(
        f"{r.name} {r.cpu_ms_per_request['receiver']:.2f}"
        for r in runs
        if "receiver" in r.cpu_ms_per_request
    )
    lag = w.lag_ms
    without = [r.name for r in runs if r.name.startswith(WITHOUT_WEBHOOKS)]
    but = f" but {len(without)} without webhooks" if without else ""
    lines = [
        "",
        "### Webhooks (issue 11)",
        "",
        f"Every gateway run above{but} had {w.endpoints} endpoint of the first demo merchant "
        'subscribed to every event type (`enabled_events: ["*"]`), at a local receiver that '
        f"answers 204 and verified {w.verified} signatures with `standardwebhooks`. After the "
        f"runs and the integrity check it took {w.waited_s:.1f} s more until the receiver had "
        "every event.",
        "",
        "| events | delivered | undelivered | requests received | duplicates "
        "| unknown ids | invalid signatures | lag p50 ms | lag p99 ms | lag max ms | lag mean ms |",
        "| ---: |" + " ---: |" * 10,
        f"| {w.events:,} | {w.delivered:,} | {w.undelivered:,} | {w.received_requests:,} "
        f"| {w.duplicates:,} | {w.unknown:,} | {w.invalid_signatures:,} | {lag.p50:.0f} "
        f"| {lag.p99:.0f} | {lag.max:.0f} | {lag.mean:.0f} |",
        "",
        "Lag: from the event's `created_at` (its state change, committed with it) to the first "
        "arrival of its webhook at the receiver, over every delivered event (warm-up and mixed "
        "run included)." + (f" Receiver CPU ms/payment: {receiver_cpu}." if receiver_cpu else ""),
    ]
    if w.missing_sample:
        lines += ["", "Undelivered, for example: " + ", ".join(f"`{i}`" for i in w.missing_sample)]
    return [*lines, "", *_targets_table(w.targets)]


STORAGE_LABELS = {"memory": "memory (per worker)", "redis": "Redis (shared)"}


def _fair_use(fair_use: FairUse) -> list[str]:
    first = fair_use.runs[0]
    cap = first.rate_limit_max_in_flight
    in_flight = (
        f", at most {cap} requests in progress per worker for a key refused within its window"
        if cap
        else ""
    )
    return [
        "",
        "### Fair use: one merchant floods (issue 8)",
        "",
        f"A gateway of its own with the rate limits on ({first.rate_limit_per_second} "
        f"requests/s per API key, burst {first.rate_limit_burst}{in_flight}). The second merchant: "
        f"{first.quiet.connections} connections, each pausing {first.quiet.delay_ms} ms before "
        "its next request, alone and then while the first merchant sends on "
        f"{first.flooder.connections} connections as fast as answers come (from one rate-limit "
        "window before the second's run to a second after it; 429 is expected for it).",
        "",
        "| counters | quiet p50 ms | quiet p99 ms | under flood p50 ms | under flood p99 ms "
        "| p99 flood/quiet | flooder 2xx/s | flooder 429/s | other merchant req/s quiet / flood "
        "| gateway CPU ms/answer quiet / flood | machine busy quiet / flood |",
        "| --- |" + " ---: |" * 10,
        *(_fair_use_line(run) for run in fair_use.runs),
        "",
        *_targets_table(fair_use.targets),
    ]


def _fair_use_line(run: FairUseRun) -> str:
    quiet, flooded = run.quiet.latency_ms, run.flooded.latency_ms
    return (
        f"| {STORAGE_LABELS[run.storage]} | {quiet.p50:.1f} | {quiet.p99:.1f} "
        f"| {flooded.p50:.1f} | {flooded.p99:.1f} | {run.p99_ratio:.2f} "
        f"| {run.flooder.ok_per_second:,.0f} | {run.flooder.limited_per_second:,.0f} "
        f"| {run.quiet.ok_per_second:.0f} / {run.flooded.ok_per_second:.0f} "
        f"| {run.gateway_cpu_ms_per_answer_quiet:.2f} / {run.gateway_cpu_ms_per_answer_flood:.2f} "
        f"| {run.machine_busy_pct_quiet:.0f} % / {run.machine_busy_pct_flood:.0f} % |"
    )


def _listing(listing: Listing) -> list[str]:
    first = listing.runs[0]
    lines = [
        "",
        "### Listing payments (issue 10)",
        "",
        f"{listing.rows_loaded:,} payments bulk-loaded with their cards in "
        f"{listing.load_seconds:.0f} s (multi-row INSERTs), for four merchants interleaved in "
        f"time; the first demo merchant has {listing.merchant_rows:,} of them. "
        f"`GET /api/v1/payments?limit={listing.page_size}` on {first.connections} connections "
        f"for {first.duration_s:.0f} s each.",
        "",
        "| page | pages/s | p50 ms | p90 ms | p99 ms | non-2xx | socket err. "
        "| gateway CPU ms/page | MariaDB CPU ms/page | background CPU |",
        "| --- |" + " ---: |" * 9,
        *(
            f"| {run.name} | {run.per_second:,.0f} | {run.latency_ms.p50:.1f} "
            f"| {run.latency_ms.p90:.1f} | {run.latency_ms.p99:.1f} | {run.non_2xx} "
            f"| {run.socket_errors} | {run.gateway_cpu_ms_per_page:.2f} "
            f"| {run.mariadb_cpu_ms_per_page:.2f} | {run.background_cpu_pct:.0f} % |"
            for run in listing.runs
        ),
        "",
        "Query plans (MariaDB `EXPLAIN`, and `ANALYZE` for the rows read, of the statement the "
        "gateway sends for each page):",
    ]
    for plan in listing.plans:
        lines += [
            "",
            f"*{plan.name}*: `{plan.sql}`",
            "",
            "| table | type | key | key parts used | rows (estimate) | rows read | Extra |",
            "| --- | --- | --- | --- | ---: | ---: | --- |",
            *(
                f"| {row.table} | {row.access} | {row.key or '-'} "
                f"| {', '.join(row.used_key_parts) or '-'} | {row.rows:,} "
                f"| {'-' if row.rows_read is None else f'{row.rows_read:,.0f}'} | {row.extra} |"
                for row in plan.rows
            ),
        ]
    return [*lines, "", *_targets_table(listing.targets)]


def _galera(galera: Galera) -> list[str]:
    single = galera.runs[0]
    settings = ", ".join(
        f"`{name}={value}`" for name, value in sorted(galera.node_settings.items())
    )
    return [
        "",
        "### Galera cluster (issue 15)",
        "",
        f"Three gateway replicas (one worker each) and three wrk runs at once, one per replica "
        f"({single.connections} connections in all, {single.duration_s:.0f} s): first all on "
        "the single MariaDB server, then one replica per node of a 3-node Galera cluster "
        f"started on loopback in {galera.cluster_start_s:.1f} s (nodes: {settings}; the "
        "gateway's sessions on them: `wsrep_sync_wait=3`, statements as text). p50 is the "
        "mean of the three runs, p90/p99 the worst.",
        "",
        "| database | nodes | payments/s | p50 ms | p90 ms | p99 ms | non-2xx | socket err. "
        "| gateway CPU ms/payment | MariaDB CPU ms/payment | background CPU |",
        "| --- |" + " ---: |" * 10,
        *(
            f"| {run.name} | {run.nodes} | {run.per_second:,.0f} | {run.latency_ms.p50:.1f} "
            f"| {run.latency_ms.p90:.1f} | {run.latency_ms.p99:.1f} | {run.non_2xx} "
            f"| {run.socket_errors} | {run.gateway_cpu_ms_per_payment:.2f} "
            f"| {run.mariadb_cpu_ms_per_payment:.2f} | {run.background_cpu_pct:.0f} % |"
            for run in galera.runs
        ),
        "",
        f"The cluster makes {galera.payments_per_second_ratio:.0%} of the single server's "
        "payments/s.",
    ]


def _memory_table(report: Report) -> list[str]:
    return [
        "",
        "### Memory (VmRSS, MiB)",
        "",
        (
            f"{report.options.soak} s soak at c64, after the other runs have warmed every "
            "process up; growth is the end of the soak against its start."
            if report.memory_kind == "soak"
            else "No soak run (use `--full` or `--soak 120`): end of the last gateway run "
            "against the RSS after the warm-up."
        ),
        "",
        "| process | after warm-up | start | end | peak | VmHWM | growth | flag |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        *(_memory_line(row) for row in report.memory),
    ]


def _memory_line(row: MemoryRow) -> str:
    return (
        f"| {row.process} | {_mib(row.after_warmup_mib)} | {_mib(row.start_mib)} "
        f"| {_mib(row.end_mib)} | {_mib(row.peak_mib)} | {_mib(row.hwm_mib)} "
        f"| {row.growth_pct:+.1f} % | {row.flag} |"
    )


def _mib(value: float) -> str:
    return f"{value:.0f}"


def _peaks(run: RunResult, service: str) -> str:
    """Peak RSS of the service's serving processes (not its master or helpers), in order."""
    values = [
        mib
        for label, mib in run.rss_peak_mib.items()
        if label.startswith(service)
        and not any(word in label for word in ("master", "helper", "tracker"))
    ]
    return " / ".join(_mib(v) for v in values) if values else "-"


def report_notes(report: Report) -> list[str]:
    """What a reader must know to trust the numbers: log errors, noisy neighbours, restarts."""
    notes = []
    for entry in report.logs:
        if not (entry.error or entry.traceback or entry.warning):
            continue
        common = "; ".join(f"{m.count}x `{m.message}`" for m in entry.messages)
        notes.append(
            f"`{entry.file}`: {entry.error} error, {entry.warning} warning line(s), "
            f"{entry.traceback} traceback(s). Commonest: {common}"
        )
    for r in (*report.runs, *report.limits):
        notes += _run_notes(r)
    for run in report.fair_use.runs if report.fair_use else ():
        notes += _fair_use_notes(run)
    for page in report.listing.runs if report.listing else ():
        if page.background_cpu_pct > BACKGROUND_NOTE_PCT:
            notes.append(
                f"'listing, {page.name}': processes outside the benchmark used "
                f"{page.background_cpu_pct:.0f} % of the machine's CPU during the run: the "
                "latencies are higher than on a quiet machine"
            )
    return notes


def _fair_use_notes(run: FairUseRun) -> list[str]:
    name = f"fair use ({run.storage})"
    notes = []
    if run.background_cpu_pct > BACKGROUND_NOTE_PCT:
        notes.append(
            f"'{name}': processes outside the benchmark used {run.background_cpu_pct:.0f} % "
            "of the machine's CPU during the run: the latencies are higher than on a quiet "
            "machine"
        )
    for phase, load in (
        ("second merchant alone", run.quiet),
        ("second merchant under flood", run.flooded),
        ("flooder", run.flooder),
    ):
        errors = sum(load.socket_errors.values())
        if load.unexpected or errors:
            codes = {c: n for c, n in load.statuses.items() if not c.startswith("2")}
            notes.append(
                f"'{name}', {phase}: {load.unexpected} answer(s) with an unexpected status, "
                f"{errors} socket error(s); non-2xx by status: {codes}"
            )
    return notes


def _run_notes(r: RunResult) -> list[str]:
    notes = []
    other = r.db_other_clients_statements
    if other and r.db_statements and other > OTHER_CLIENTS_NOTE_SHARE * r.db_statements:
        notes.append(
            f"'{r.name}': other clients sent {other:,} statements to the shared MariaDB "
            "server during the run (not counted as gateway round trips)"
        )
    if r.background_cpu_pct > BACKGROUND_NOTE_PCT:
        notes.append(
            f"'{r.name}': processes outside the benchmark used "
            f"{r.background_cpu_pct:.0f} % of the machine's CPU during the run: "
            "the numbers are lower than on a quiet machine"
        )
    if r.worker_restarts:
        notes.append(f"'{r.name}': a worker was restarted during the run")
    codes = {c: n for c, n in r.statuses.items() if not c.startswith("2")}
    if codes:
        notes.append(f"'{r.name}': non-2xx answers by status: {codes}")
    return notes
