"""Benchmark of the real stack: gateway + bank simulator + MariaDB, driven by wrk.

    .venv/bin/python bench/run.py             # headline runs, 15 s each (make bench)
    .venv/bin/python bench/run.py --full      # ... plus the 2-minute memory soak
    .venv/bin/python bench/run.py --quick     # smoke test, a few seconds per run

What it does, in order (see bench/README.md for the method and how to read the numbers):

1. installs wrk if missing, creates a fresh MariaDB database and a user of its own (so that
   the database round trips of the gateway can be counted apart from any other client);
2. starts the bank simulator (1 worker) and the gateway (one worker per core) with uvicorn,
   uvloop and httptools, as in production, and warms the gateway up;
3. drives the gateway with wrk (bench/load.lua): all-4242 at c16 and c64, a mix of the three
   card outcomes at c64, and optionally a long c64 soak for memory flatness — measuring
   payments/s, latency, errors, CPU per payment (/proc), database statements per payment and
   the RSS of every process;
4. checks that every payment answered 2xx is in the database (nothing lost);
5. measures the reference "limit": the bank simulator alone and a bare FastAPI endpoint
   (bench/bare_app.py) with the same uvicorn settings, and prints the ratios;
6. writes bench/results/latest.{md,json} (plus a timestamped copy) and the service logs.

Processes, the database and the database user are always cleaned up, even on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import asyncmy
from asyncmy.errors import OperationalError

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
RESULTS = BENCH / "results"
LOAD_SCRIPT = BENCH / "load.lua"

MARIADB_HOST = "127.0.0.1"
MARIADB_PORT = 3306
MARIADB_ADMIN_USER = "root"
MARIADB_ADMIN_PASSWORD = ""  # the local development server; see README "Testing"

PAYMENTS_PATH = "/api/v1/payments"
DEPOSIT_PATH = "/api/v1/deposit"
PENDING_SETTLE_SECONDS = 2
BANK_MAX_TRANSACTIONS = 20_000
RECONCILE_INTERVAL_SECONDS = 2
BANK_TIMEOUT_SECONDS = 3
WRK_TIMEOUT = "10s"

# The targets of issue 5, checked against the c64 all-4242 run.
TARGET_PAYMENTS_PER_SECOND = 1000
TARGET_P99_MS = 150
TARGET_CPU_MS_PER_PAYMENT = 1.0
TARGET_BARE_FRACTION = 1 / 16
STRETCH_PAYMENTS_PER_SECOND = 1750
MAX_RSS_GROWTH = 0.10
MAX_WORKER_RSS_MIB = 150
BACKGROUND_NOTE_PCT = 5  # note runs where other processes used more of the CPU

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
MIB = 1024 * 1024


# ---------------------------------------------------------------------------------------------
# Options


@dataclass(frozen=True)
class Options:
    duration: int
    warmup: int
    soak: int
    threads: int
    gateway_workers: int
    keep_db: bool
    quick: bool


def parse_args(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        description="Benchmark the payment gateway against MariaDB and the bank simulator.",
    )
    parser.add_argument("--duration", type=int, help="seconds per measured run (default 15)")
    parser.add_argument("--warmup", type=int, help="seconds of unmeasured warm-up (default 3)")
    parser.add_argument(
        "--soak",
        type=int,
        help="seconds of c64 load to check memory flatness (default 0, or 120 with --full)",
    )
    parser.add_argument("--full", action="store_true", help="include the 120 s memory soak")
    parser.add_argument(
        "--quick", action="store_true", help="smoke test: 3 s runs, 1 s warm-up, no soak"
    )
    parser.add_argument(
        "--gateway-workers", type=int, default=os.cpu_count() or 1, help="default: CPU count"
    )
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument(
        "--keep-db", action="store_true", help="keep the benchmark database afterwards"
    )
    args = parser.parse_args(argv)
    duration = args.duration or (3 if args.quick else 15)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 3)
    soak = args.soak if args.soak is not None else (120 if args.full else 0)
    if duration < 1 or warmup < 0 or soak < 0 or args.gateway_workers < 1 or args.threads < 1:
        parser.error("durations must be positive and workers/threads at least 1")
    return Options(
        duration=duration,
        warmup=warmup,
        soak=soak,
        threads=args.threads,
        gateway_workers=args.gateway_workers,
        keep_db=args.keep_db,
        quick=args.quick,
    )


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


# ---------------------------------------------------------------------------------------------
# /proc: process trees, CPU time, memory


def _stat_fields(pid: int) -> list[str]:
    """Fields of /proc/<pid>/stat from field 3 (state) on; the name may contain spaces."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def descendants(root: int) -> list[int]:
    """Every live descendant of ``root`` (children, grandchildren, ...)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int(_stat_fields(int(entry.name))[1])
        except (OSError, ValueError, IndexError):
            continue  # the process ended while we looked
        children.setdefault(parent, []).append(int(entry.name))
    found: list[int] = []
    pending = [root]
    while pending:
        for child in children.get(pending.pop(), []):
            found.append(child)
            pending.append(child)
    return found


def cpu_ticks(pid: int, *, include_reaped_children: bool = False) -> int:
    """utime + stime of one process (+ cutime + cstime: children it has already reaped)."""
    fields = _stat_fields(pid)
    ticks = int(fields[11]) + int(fields[12])
    if include_reaped_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks


def memory_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in KiB; (0, 0) once the process is gone."""
    rss = hwm = 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    except OSError:
        pass
    return rss, hwm


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def system_busy_ticks() -> int:
    """CPU ticks spent on anything but idle/iowait, all cores together (/proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return user + nice + system + irq + softirq + steal


def find_mariadb_pid() -> int | None:
    """The local MariaDB/MySQL server process, to count its CPU (it runs on this machine)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() in ("mariadbd", "mysqld"):
                    return int(entry.name)
    return None


# ---------------------------------------------------------------------------------------------
# Services: uvicorn processes in their own process groups


@dataclass
class Service:
    name: str
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    log_file: IO[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def processes(self) -> dict[int, str]:
        """Live processes of this service, labelled: master/workers for multi-worker uvicorn."""
        root = self.process.pid
        children = descendants(root)
        if not children:
            return {root: self.name}
        labels = {root: f"{self.name} master"}
        workers = sorted(pid for pid in children if "spawn_main" in cmdline(pid))
        for number, pid in enumerate(workers, start=1):
            labels[pid] = f"{self.name} worker {number}"
        for pid in children:
            kind = "resource tracker" if "resource_tracker" in cmdline(pid) else f"helper {pid}"
            labels.setdefault(pid, f"{self.name} {kind}")
        return labels

    def worker_pids(self) -> list[int]:
        return [pid for pid, label in self.processes().items() if " worker " in label]

    def cpu_ticks(self) -> int:
        """CPU of the whole service: live processes plus workers the master has reaped."""
        total = cpu_ticks(self.process.pid, include_reaped_children=True)
        for pid in descendants(self.process.pid):
            with contextlib.suppress(OSError, ValueError, IndexError):
                total += cpu_ticks(pid)
        return total


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_service(
    name: str, app: str, *, workers: int, env: dict[str, str], app_dir: Path | None = None
) -> Service:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        app,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--loop",
        "uvloop",
        "--no-access-log",
        # The gateway's production server flags (README.md, Server flags), for every process
        # here so the bare reference endpoint runs under the same server as the gateway.
        "--http",
        "payment_gateway.http_server:BoundedHttpToolsProtocol",
        "--limit-concurrency",
        "1024",
        "--timeout-keep-alive",
        "5",
        "--no-server-header",
    ]
    if app_dir is not None:
        command += ["--app-dir", str(app_dir)]
    log_path = RESULTS / f"{name}.log"
    log_file = log_path.open("wb")
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and fixed arguments
        command,
        cwd=REPO,
        env={**os.environ, **env},
        stdin=subprocess.DEVNULL,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: we stop master and workers at once
    )
    log(f"started {name} (pid {process.pid}) on port {port} with {workers} worker(s)")
    return Service(name, process, port, log_path, log_file)


def wait_until_ready(service: Service, *, workers: int, timeout: float = 90) -> None:
    """Wait for /healthz to answer 200 and, with several workers, for all of them to exist."""
    deadline = time.monotonic() + timeout
    healthy = False
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            raise RuntimeError(
                f"{service.name} exited with {service.process.returncode}:\n"
                + tail(service.log_path)
            )
        if not healthy:
            healthy = http_status(service.url + "/healthz") == 200
        if healthy and (workers == 1 or len(service.worker_pids()) >= workers):
            if workers > 1:
                time.sleep(1.0)  # give the last worker time to finish its start-up
            return
        time.sleep(0.2)
    raise RuntimeError(f"{service.name} not ready after {timeout} s:\n" + tail(service.log_path))


def http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback URL
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


def stop_service(service: Service, *, grace: float = 10) -> None:
    """SIGTERM to the whole process group, then SIGKILL whatever is left after ``grace``."""
    group = service.process.pid  # start_new_session: the group id is the leader's pid
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGTERM)
    try:
        service.process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        log(f"{service.name} did not stop within {grace} s: SIGKILL")
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGKILL)  # stragglers (workers, helpers) of the group
    with contextlib.suppress(subprocess.TimeoutExpired):
        service.process.wait(timeout=5)
    service.log_file.close()


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# ---------------------------------------------------------------------------------------------
# Memory sampling


@dataclass
class RssSeries:
    """VmRSS samples (KiB) of one process during one measured run."""

    samples: list[int] = field(default_factory=list)

    @property
    def first_mib(self) -> float:
        return self.samples[0] / 1024 if self.samples else 0.0

    @property
    def last_mib(self) -> float:
        return self.samples[-1] / 1024 if self.samples else 0.0

    @property
    def peak_mib(self) -> float:
        return max(self.samples) / 1024 if self.samples else 0.0


class RssSampler:
    """Samples VmRSS of the given processes every ``interval`` seconds in a background thread."""

    def __init__(self, processes: dict[int, str], interval: float = 0.5) -> None:
        self._processes = processes
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self.series: dict[str, RssSeries] = {label: RssSeries() for label in processes.values()}

    def _sample(self) -> None:
        for pid, label in self._processes.items():
            rss, _ = memory_kib(pid)
            if rss:
                self.series[label].samples.append(rss)

    def _run(self) -> None:
        while True:
            self._sample()
            if self._stop.wait(self._interval):
                return

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()  # the state at the very end of the run


def rss_snapshot_mib(processes: dict[int, str]) -> dict[str, float]:
    return {label: memory_kib(pid)[0] / 1024 for pid, label in processes.items()}


def hwm_snapshot_mib(processes: dict[int, str]) -> dict[str, float]:
    return {label: memory_kib(pid)[1] / 1024 for pid, label in processes.items()}


# ---------------------------------------------------------------------------------------------
# MariaDB


class MariaDB:
    """One administrative connection, used synchronously; counts the statements it sends."""

    def __init__(self) -> None:
        self._runner = asyncio.Runner()
        self._connection = self._runner.run(
            asyncmy.connect(
                host=MARIADB_HOST,
                port=MARIADB_PORT,
                user=MARIADB_ADMIN_USER,
                password=MARIADB_ADMIN_PASSWORD,
                autocommit=True,
            )
        )
        self.statements_sent = 0

    def query(self, sql: str, args: tuple[Any, ...] | None = None) -> list[tuple[Any, ...]]:
        self.statements_sent += 1
        return self._runner.run(self._query(sql, args))

    async def _query(self, sql: str, args: tuple[Any, ...] | None) -> list[tuple[Any, ...]]:
        async with self._connection.cursor() as cursor:
            await cursor.execute(sql, args)
            return list(await cursor.fetchall() or [])

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._connection.close()
        self._runner.close()


@dataclass(frozen=True)
class StatementCount:
    """Statements seen by the server at one instant (see BenchDatabase.statement_count)."""

    bench_user: int | None  # statements of the gateway's own user (userstat), if available
    global_questions: int  # every client's statements (SHOW GLOBAL STATUS 'Questions')
    harness: int  # statements this harness sent itself


@dataclass(frozen=True)
class StatementDelta:
    gateway: int  # statements attributed to the gateway
    other_clients: int | None  # statements of unrelated clients (other tests, ...) meanwhile
    method: str


class BenchDatabase:
    """A fresh database and user for one benchmark; dropped afterwards.

    The gateway connects as its own user so that its statements can be counted apart from
    other clients of the shared server, through MariaDB's user statistics (``userstat``,
    switched on for the run and restored afterwards). Without the privilege to switch it on,
    the count falls back to the global ``Questions`` counter minus the harness's own queries.
    """

    def __init__(self, admin: MariaDB) -> None:
        self.admin = admin
        self.name = f"pgw_bench_{secrets.token_hex(4)}"
        self.user = self.name
        self.password = secrets.token_hex(16)
        self.created = False
        self.user_created = False
        self.userstat_was: int | None = None
        self.userstat = False

    @property
    def url(self) -> str:
        return (
            f"mysql+asyncmy://{self.user}:{self.password}@{MARIADB_HOST}:{MARIADB_PORT}/{self.name}"
        )

    def create(self) -> None:
        self.admin.query(f"CREATE DATABASE `{self.name}` CHARACTER SET utf8mb4")
        self.created = True
        account = f"'{self.user}'@'{MARIADB_HOST}'"
        self.admin.query(f"CREATE USER {account} IDENTIFIED BY %s", (self.password,))
        self.user_created = True
        self.admin.query(f"GRANT ALL PRIVILEGES ON `{self.name}`.* TO {account}")
        self.userstat_was = int(self.admin.query("SELECT @@GLOBAL.userstat")[0][0])
        if self.userstat_was:
            self.userstat = True
            return
        try:
            self.admin.query("SET GLOBAL userstat = 1")
            self.userstat = True
        except OperationalError as error:
            log(f"cannot switch on userstat ({error}): counting global Questions instead")

    def version(self) -> str:
        return str(self.admin.query("SELECT VERSION()")[0][0])

    def statement_count(self) -> StatementCount:
        bench_user = None
        if self.userstat:
            rows = self.admin.query(
                "SELECT SELECT_COMMANDS + UPDATE_COMMANDS + OTHER_COMMANDS"
                " FROM information_schema.USER_STATISTICS WHERE USER = %s",
                (self.user,),
            )
            bench_user = int(rows[0][0]) if rows else 0
        questions = int(self.admin.query("SHOW GLOBAL STATUS LIKE 'Questions'")[0][1])
        # 'Questions' already counts the query that reads it: take the harness count after it.
        return StatementCount(bench_user, questions, self.admin.statements_sent)

    @staticmethod
    def delta(before: StatementCount, after: StatementCount) -> StatementDelta:
        harness = after.harness - before.harness
        questions = after.global_questions - before.global_questions
        if before.bench_user is not None and after.bench_user is not None:
            gateway = after.bench_user - before.bench_user
            return StatementDelta(gateway, questions - harness - gateway, "user_statistics")
        return StatementDelta(questions - harness, None, "global_questions")

    def payment_count(self) -> int:
        return int(self.admin.query(f"SELECT COUNT(*) FROM `{self.name}`.payments")[0][0])  # noqa: S608

    def wait_for_quiet_payments(self, *, timeout: float = 5) -> int:
        """The payment count once it has stopped changing (requests still in flight ended)."""
        deadline = time.monotonic() + timeout
        count = self.payment_count()
        while time.monotonic() < deadline:
            time.sleep(0.5)
            latest = self.payment_count()
            if latest == count:
                break
            count = latest
        return count

    def payment_statuses(self) -> dict[str, int]:
        rows = self.admin.query(
            f"SELECT status, COUNT(*) FROM `{self.name}`.payments GROUP BY status"  # noqa: S608
        )
        return {str(status): int(count) for status, count in rows}

    def drop(self, *, keep: bool) -> None:
        """Drop what create() made and restore userstat; each step even if another failed."""
        steps: list[tuple[str, str]] = []
        if self.created and not keep:
            steps.append((f"drop database {self.name}", f"DROP DATABASE IF EXISTS `{self.name}`"))
        elif self.created:
            log(f"kept database {self.name} (--keep-db)")
        if self.user_created:
            account = f"'{self.user}'@'{MARIADB_HOST}'"
            steps.append((f"drop user {self.user}", f"DROP USER IF EXISTS {account}"))
        if self.userstat and self.userstat_was == 0:
            steps.append(("switch userstat off again", "SET GLOBAL userstat = 0"))
        for what, sql in steps:
            try:
                self.admin.query(sql)
                log(what)
            except Exception as error:  # report it and go on cleaning up
                log(f"could not {what}: {error}")


# ---------------------------------------------------------------------------------------------
# wrk


def ensure_wrk() -> str:
    """The path of wrk, installing the Debian package first when it is missing."""
    found = shutil.which("wrk")
    if found:
        return found
    apt = shutil.which("apt-get")
    if apt is None:
        raise RuntimeError("wrk is not installed and apt-get is not available: install wrk")
    prefix = [] if os.geteuid() == 0 else [shutil.which("sudo") or "sudo", "-n"]
    log("wrk is missing: apt-get install -y wrk")
    install = [*prefix, apt, "install", "-y", "wrk"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run(install, env=env, check=False).returncode != 0:  # noqa: S603
        subprocess.run([*prefix, apt, "update"], env=env, check=True)  # noqa: S603
        subprocess.run(install, env=env, check=True)  # noqa: S603
    found = shutil.which("wrk")
    if not found:
        raise RuntimeError("wrk is still missing after apt-get install")
    return found


@dataclass(frozen=True)
class WrkResult:
    duration_s: float
    sent: int  # requests built by the Lua script
    responses: int  # answers received
    statuses: dict[str, int]
    socket_errors: dict[str, int]  # connect/read/write/timeout ("status" is in statuses)
    latency_ms: dict[str, float]

    @property
    def ok_2xx(self) -> int:
        return sum(count for code, count in self.statuses.items() if code.startswith("2"))

    @property
    def non_2xx(self) -> int:
        return sum(self.statuses.values()) - self.ok_2xx

    @property
    def unanswered(self) -> int:
        """Requests sent but not answered: in flight when wrk stopped, or cut by an error."""
        return max(0, self.sent - self.responses)


def run_wrk(
    wrk: str, url: str, mode: str, *, connections: int, seconds: int, threads: int, label: str
) -> WrkResult:
    run_id = f"{secrets.token_hex(4)}-{mode}-c{connections}"
    command = [
        wrk,
        f"-t{min(threads, connections)}",
        f"-c{connections}",
        f"-d{seconds}s",
        f"--timeout={WRK_TIMEOUT}",
        "--latency",
        "-s",
        str(LOAD_SCRIPT),
        url,
        "--",
        run_id,
        mode,
    ]
    completed = subprocess.run(  # noqa: S603 - wrk with fixed arguments
        command, capture_output=True, text=True, check=False, timeout=seconds + 120
    )
    with (RESULTS / "wrk.log").open("a") as wrk_log:
        wrk_log.write(f"==== {label}: {' '.join(command)}\n{completed.stdout}{completed.stderr}\n")
    line = next(
        (ln for ln in completed.stdout.splitlines() if ln.startswith("WRK_JSON ")),
        None,
    )
    if completed.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({completed.returncode}):\n{completed.stderr}")
    data = json.loads(line.removeprefix("WRK_JSON "))
    latency = data["latency_us"]
    percentiles = latency["percentiles"]
    return WrkResult(
        duration_s=data["duration_us"] / 1e6,
        sent=int(data["sent"]),
        responses=int(data["responses"]),
        statuses={str(code): int(count) for code, count in data["statuses"].items()},
        socket_errors={
            kind: int(data["errors"].get(kind, 0))
            for kind in ("connect", "read", "write", "timeout")
        },
        latency_ms={
            "p50": percentiles["50"] / 1000,
            "p75": percentiles["75"] / 1000,
            "p90": percentiles["90"] / 1000,
            "p99": percentiles["99"] / 1000,
            "p99.9": percentiles["99.9"] / 1000,
            "mean": latency["mean"] / 1000,
            "max": latency["max"] / 1000,
        },
    )


# ---------------------------------------------------------------------------------------------
# One measured run


@dataclass(frozen=True)
class CpuSnapshot:
    """CPU time used so far (in ticks) by everything that takes part in a run."""

    services: dict[str, int]
    mariadb: int
    children: int  # processes this harness has waited for: wrk
    harness: int
    machine_busy: int
    wall: float

    @classmethod
    def take(cls, services: dict[str, Service], mariadb_pid: int | None) -> CpuSnapshot:
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

    ms: dict[str, float]  # per service, "mariadb" and "wrk"
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
class RunResult:
    name: str
    target: str  # gateway | bank | bare
    mode: str  # payments | mixed | deposit
    connections: int
    duration_s: float
    sent: int
    responses: int
    ok_2xx: int
    non_2xx: int
    unanswered: int
    statuses: dict[str, int]
    socket_errors: dict[str, int]
    per_second: float  # 2xx answers per second (payments/s for the gateway)
    latency_ms: dict[str, float]
    # Payment rows the run created: the 2xx answers plus the requests wrk cut off at the end
    # that the gateway still completed. The denominator of the per-payment costs below.
    payments_created: int | None
    cpu_ms_per_request: dict[str, float]  # per service, "mariadb" and "wrk"
    machine_busy_pct: float  # all cores busy = 100
    background_cpu_pct: float  # share of all cores used by processes outside the benchmark
    db_statements: int | None
    db_round_trips_per_payment: float | None
    db_other_clients_statements: int | None
    db_count_method: str | None
    rss_peak_mib: dict[str, float]
    worker_restarts: bool

    @property
    def total_socket_errors(self) -> int:
        return sum(self.socket_errors.values())


@dataclass
class Bench:
    """What a benchmark session needs to measure runs: wrk, the services, the database."""

    options: Options
    wrk: str
    db: BenchDatabase | None = None
    services: dict[str, Service] = field(default_factory=dict)
    gateway_wrk: list[WrkResult] = field(default_factory=list)  # every run that made payments
    mariadb_pid: int | None = field(default_factory=find_mariadb_pid)

    def processes(self, names: list[str]) -> dict[int, str]:
        labels: dict[int, str] = {}
        for name in names:
            labels.update(self.services[name].processes())
        return labels

    def warm_up(self, target: str, mode: str, seconds: int) -> None:
        if seconds <= 0:
            return
        log(f"warm-up {target} {mode} c64 for {seconds} s")
        result = run_wrk(
            self.wrk,
            self.services[target].url + _path(mode),
            mode,
            connections=64,
            seconds=seconds,
            threads=self.options.threads,
            label=f"warm-up {target} {mode}",
        )
        if target == "gateway":
            self.gateway_wrk.append(result)

    def measure(
        self,
        name: str,
        target: str,
        mode: str,
        *,
        connections: int,
        seconds: int,
        watch: list[str],
    ) -> tuple[RunResult, dict[str, RssSeries]]:
        """One wrk run against ``target``, measuring CPU and memory of the ``watch`` services."""
        log(f"run '{name}': {seconds} s at c{connections}")
        services = {svc: self.services[svc] for svc in watch}
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
            BenchDatabase.delta(statements_before, statements_after)
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
            cpu_ms_per_request={name: ms / per for name, ms in cpu.ms.items()},
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
            f"  {result.per_second:,.0f}/s  p50 {result.latency_ms['p50']:.1f} ms"
            f"  p99 {result.latency_ms['p99']:.1f} ms  non-2xx {result.non_2xx}"
            f"  socket errors {result.total_socket_errors}"
            f"  background CPU {result.background_cpu_pct:.0f} %"
        )
        return result, sampler.series


def _path(mode: str) -> str:
    return DEPOSIT_PATH if mode == "deposit" else PAYMENTS_PATH


# ---------------------------------------------------------------------------------------------
# Checks after the gateway runs


@dataclass
class Integrity:
    payment_rows: int
    answered_2xx: int
    answered_non_2xx: int
    unanswered: int  # sent but not answered (in flight when wrk stopped): may or may not be rows
    statuses: dict[str, int]  # payment statuses in the database after settling
    settled: bool  # no payment left in init/processing
    verdict: str  # exact | ok | LOST | EXTRA

    @property
    def ok(self) -> bool:
        return self.verdict in ("exact", "ok")


def check_integrity(bench: Bench, *, settle_timeout: float = 60) -> Integrity:
    """Wait for open payments to settle, then compare the rows with wrk's 2xx answers."""
    assert bench.db is not None
    deadline = time.monotonic() + settle_timeout
    statuses = bench.db.payment_statuses()
    while (statuses.get("init") or statuses.get("processing")) and time.monotonic() < deadline:
        time.sleep(0.5)
        statuses = bench.db.payment_statuses()
    rows = sum(statuses.values())
    answered = sum(r.ok_2xx for r in bench.gateway_wrk)
    non_2xx = sum(r.non_2xx for r in bench.gateway_wrk)
    unanswered = sum(r.unanswered for r in bench.gateway_wrk)
    if rows < answered:
        verdict = "LOST"  # a payment answered 2xx is missing from the database
    elif rows > answered + unanswered + non_2xx:
        verdict = "EXTRA"  # more rows than requests could have made: duplicates
    elif rows == answered + unanswered:
        verdict = "exact"  # every request sent is a row: the answered ones and those cut off
    else:
        verdict = "ok"
    return Integrity(
        payment_rows=rows,
        answered_2xx=answered,
        answered_non_2xx=non_2xx,
        unanswered=unanswered,
        statuses=statuses,
        settled=not (statuses.get("init") or statuses.get("processing")),
        verdict=verdict,
    )


@dataclass
class MemoryRow:
    process: str
    after_warmup_mib: float
    start_mib: float  # at the start of the soak (or of the first measured run)
    end_mib: float
    peak_mib: float
    hwm_mib: float  # VmHWM: the kernel's high-water mark over the process's life
    growth_pct: float  # end vs. after warm-up
    flag: str


def memory_rows(
    after_warmup: dict[str, float],
    series: dict[str, RssSeries],
    peaks: dict[str, float],
    hwm: dict[str, float],
) -> list[MemoryRow]:
    rows = []
    for label, baseline in after_warmup.items():
        run = series.get(label, RssSeries())
        end = run.last_mib or baseline
        growth = (end - baseline) / baseline * 100 if baseline else 0.0
        flags = []
        if growth > MAX_RSS_GROWTH * 100:
            flags.append(f"grew > {MAX_RSS_GROWTH:.0%}")
        if " worker " in label and max(peaks.get(label, 0.0), end) > MAX_WORKER_RSS_MIB:
            flags.append(f"worker > {MAX_WORKER_RSS_MIB} MiB")
        rows.append(
            MemoryRow(
                process=label,
                after_warmup_mib=baseline,
                start_mib=run.first_mib,
                end_mib=end,
                peak_mib=max(peaks.get(label, 0.0), run.peak_mib),
                hwm_mib=hwm.get(label, 0.0),
                growth_pct=growth,
                flag=", ".join(flags),
            )
        )
    return rows


LOG_LEVEL_PATTERN = re.compile(
    r"\[\s*(warning|error|critical)\s*\]"  # structlog console: "[error    ]"
    r"|^(WARNING|ERROR|CRITICAL):"  # uvicorn's default formatter
    r"|\"level\":\s*\"(warning|error|critical)\"",  # JSON logs
    re.IGNORECASE,
)
EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Disconnect|Warning|Exit)\b")
TIMESTAMP = re.compile(r"^\S*\d{4}-\d\d-\d\dT[\d:.]+Z?\s*")


def scan_log(path: Path) -> dict[str, Any]:
    """Count warning/error lines and tracebacks in a service log, with the commonest messages."""
    counts = {"warning": 0, "error": 0, "traceback": 0}
    messages: dict[str, int] = {}
    for line in path.read_text(errors="replace").splitlines():
        level = LOG_LEVEL_PATTERN.search(line)
        if line.startswith("Traceback"):
            counts["traceback"] += 1
            continue
        if level:
            name = next(g for g in level.groups() if g).lower()
            counts["warning" if name == "warning" else "error"] += 1
        elif not EXCEPTION_LINE.match(line):
            continue
        message = TIMESTAMP.sub("", line).strip()[:200]
        messages[message] = messages.get(message, 0) + 1
    top = sorted(messages.items(), key=lambda item: -item[1])[:6]
    return {
        "file": str(path.relative_to(REPO)),
        **counts,
        "messages": [{"message": m, "count": n} for m, n in top],
    }


# ---------------------------------------------------------------------------------------------
# Machine description


def machine_info(mariadb_version: str, wrk: str) -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next(
        (ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if ln.startswith("model name")),
        platform.processor() or "unknown",
    )
    meminfo = Path("/proc/meminfo").read_text().split()
    ram_gib = int(meminfo[meminfo.index("MemTotal:") + 1]) / 1024 / 1024
    wrk_version = subprocess.run(  # noqa: S603
        [wrk, "--version"], capture_output=True, text=True, check=False
    ).stdout.split("Copyright", 1)[0]
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "ram_gib": round(ram_gib, 1),
        "kernel": platform.release(),
        "os": _os_name(),
        "python": platform.python_version(),
        "mariadb": mariadb_version,
        "wrk": wrk_version.strip(),
        "git": _git_revision(),
    }


def _os_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    return platform.system()


def _git_revision() -> str:
    git = shutil.which("git")
    if git is None:
        return "unknown"

    def run(*args: str) -> str:
        return subprocess.run(  # noqa: S603
            [git, *args], cwd=REPO, capture_output=True, text=True, check=False
        ).stdout.strip()

    revision = run("rev-parse", "--short", "HEAD") or "unknown"
    dirty = run("status", "--porcelain", "--", "payment_gateway", "bank_simulator")
    return revision + (" + uncommitted changes" if dirty else "")


# ---------------------------------------------------------------------------------------------
# Report


def build_report(
    options: Options,
    machine: dict[str, Any],
    runs: list[RunResult],
    limits: list[RunResult],
    integrity: Integrity,
    memory: list[MemoryRow],
    memory_kind: str,
    logs: list[dict[str, Any]],
    environment: dict[str, str],
    started: datetime,
    elapsed_s: float,
) -> dict[str, Any]:
    headline = next(
        r for r in runs if r.target == "gateway" and r.mode == "payments" and r.connections == 64
    )
    bare = next((r for r in limits if r.target == "bare"), None)
    bank = next((r for r in limits if r.target == "bank"), None)
    ratios = {
        "gateway_over_bare": headline.per_second / bare.per_second if bare else None,
        "gateway_over_bank": headline.per_second / bank.per_second if bank else None,
    }
    gateway_runs = [r for r in runs if r.target == "gateway"]
    workers_peak = max(
        (mib for r in gateway_runs for label, mib in r.rss_peak_mib.items() if " worker " in label),
        default=0.0,
    )
    targets = [
        _target(
            f"payments/s at c64 >= {TARGET_PAYMENTS_PER_SECOND:,}",
            f"{headline.per_second:,.0f}",
            headline.per_second >= TARGET_PAYMENTS_PER_SECOND,
        ),
        _target(
            f"p99 at c64 < {TARGET_P99_MS} ms",
            f"{headline.latency_ms['p99']:.1f} ms",
            headline.latency_ms["p99"] < TARGET_P99_MS,
        ),
        _target(
            "zero errors (non-2xx + socket errors, all gateway runs)",
            str(sum(r.non_2xx + r.total_socket_errors for r in gateway_runs)),
            all(r.non_2xx == 0 and r.total_socket_errors == 0 for r in gateway_runs),
        ),
        _target(
            f"gateway CPU <= {TARGET_CPU_MS_PER_PAYMENT} ms/payment at c64",
            f"{headline.cpu_ms_per_request['gateway']:.2f} ms",
            headline.cpu_ms_per_request["gateway"] <= TARGET_CPU_MS_PER_PAYMENT,
        ),
    ]
    if bare:
        targets.append(
            _target(
                "payments/s >= 1/16 of the bare endpoint's requests/s",
                f"1/{bare.per_second / headline.per_second:.1f}",
                headline.per_second >= bare.per_second * TARGET_BARE_FRACTION,
            )
        )
    targets += [
        _target(
            "nothing lost, no duplicates (payment rows vs 2xx answers)",
            integrity.verdict,
            integrity.ok,
        ),
        _target(
            f"gateway worker RSS < {MAX_WORKER_RSS_MIB} MiB",
            f"{workers_peak:.0f} MiB peak",
            workers_peak < MAX_WORKER_RSS_MIB,
        ),
    ]
    if memory_kind == "soak":
        worst = max(memory, key=lambda row: row.growth_pct)
        targets.append(
            _target(
                f"RSS growth <= {MAX_RSS_GROWTH:.0%} over the soak (every process)",
                f"{worst.growth_pct:+.1f} % ({worst.process})",
                all(row.growth_pct <= MAX_RSS_GROWTH * 100 for row in memory),
            )
        )
    targets.append(
        _target(
            f"stretch: payments/s at c64 >= {STRETCH_PAYMENTS_PER_SECOND:,}",
            f"{headline.per_second:,.0f}",
            headline.per_second >= STRETCH_PAYMENTS_PER_SECOND,
        )
    )
    return {
        "date": started.isoformat(timespec="seconds"),
        "elapsed_s": round(elapsed_s, 1),
        "quick": options.quick,
        "options": asdict(options),
        "machine": machine,
        "environment": environment,
        "runs": [asdict(r) for r in runs],
        "limits": [asdict(r) for r in limits],
        "ratios": ratios,
        "integrity": asdict(integrity),
        "memory_kind": memory_kind,
        "memory": [asdict(row) for row in memory],
        "targets": targets,
        "logs": logs,
    }


def _target(name: str, value: str, met: bool) -> dict[str, Any]:
    return {"target": name, "value": value, "met": met}


def _mib(value: float) -> str:
    return f"{value:.0f}"


def _peaks(run: dict[str, Any], service: str) -> str:
    values = [
        mib
        for label, mib in run["rss_peak_mib"].items()
        if label.startswith(service)
        and not any(word in label for word in ("master", "helper", "tracker"))
    ]
    return " / ".join(_mib(v) for v in values) if values else "-"


def render_markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    o = report["options"]
    out = [
        "## Benchmark results"
        + (" (quick smoke run: not representative)" if report["quick"] else ""),
        "",
        f"{report['date']} · {m['cpu']} · {m['cores']} cores · {m['ram_gib']} GiB RAM · "
        f"{m['os']}, kernel {m['kernel']} · Python {m['python']} · MariaDB {m['mariadb']} · "
        f"{m['wrk']} · git {m['git']}",
        "",
        f"Everything on one machine over loopback: gateway ({o['gateway_workers']} uvicorn "
        "workers, uvloop, httptools), bank simulator (1 worker), MariaDB and wrk "
        f"(`-t{o['threads']}`, {o['duration']} s per run after a {o['warmup']} s warm-up).",
        "",
        "### Gateway",
        "",
        "| run | conc. | payments/s | p50 ms | p90 ms | p99 ms | non-2xx | socket err. "
        "| gateway CPU ms/payment | bank CPU ms/payment | MariaDB CPU ms/payment "
        "| DB round trips/payment | peak RSS workers MiB | peak RSS bank MiB "
        "| background CPU |",
        "| --- |" + " ---: |" * 14,
    ]
    for r in report["runs"]:
        lat = r["latency_ms"]
        trips = r["db_round_trips_per_payment"]
        out.append(
            f"| {r['name']} | {r['connections']} | {r['per_second']:,.0f} | {lat['p50']:.1f} "
            f"| {lat['p90']:.1f} | {lat['p99']:.1f} | {r['non_2xx']} "
            f"| {sum(r['socket_errors'].values())} "
            f"| {r['cpu_ms_per_request'].get('gateway', 0):.2f} "
            f"| {r['cpu_ms_per_request'].get('bank', 0):.2f} "
            f"| {r['cpu_ms_per_request'].get('mariadb', 0):.2f} "
            f"| {'-' if trips is None else f'{trips:.2f}'} "
            f"| {_peaks(r, 'gateway worker')} | {_peaks(r, 'bank')} "
            f"| {r['background_cpu_pct']:.0f} % |"
        )
    out += [
        "",
        "### Reference limit on this machine (same uvicorn settings, same wrk, c64)",
        "",
        "| target | requests/s | p50 ms | p99 ms | non-2xx | socket err. | CPU ms/request "
        "| peak RSS MiB | background CPU |",
        "| --- |" + " ---: |" * 8,
    ]
    for r in report["limits"]:
        lat = r["latency_ms"]
        out.append(
            f"| {r['name']} | {r['per_second']:,.0f} | {lat['p50']:.1f} | {lat['p99']:.1f} "
            f"| {r['non_2xx']} | {sum(r['socket_errors'].values())} "
            f"| {r['cpu_ms_per_request'].get(r['target'], 0):.2f} "
            f"| {_peaks(r, r['target'])} | {r['background_cpu_pct']:.0f} % |"
        )
    ratios = report["ratios"]
    out += [""]
    if ratios["gateway_over_bare"] is not None:
        out.append(
            f"Gateway c64 / bare endpoint: **{ratios['gateway_over_bare']:.3f}** "
            f"(1/{1 / ratios['gateway_over_bare']:.1f})  "
        )
    if ratios["gateway_over_bank"] is not None:
        out.append(
            f"Gateway c64 / bank simulator alone: **{ratios['gateway_over_bank']:.3f}** "
            f"(1/{1 / ratios['gateway_over_bank']:.1f})"
        )
    i = report["integrity"]
    out += [
        "",
        "### Nothing lost",
        "",
        f"Payment rows in the database: **{i['payment_rows']:,}**; 2xx answers counted by wrk "
        f"(warm-up included): **{i['answered_2xx']:,}**; requests still in flight when wrk "
        f"stopped: {i['unanswered']:,}; non-2xx answers: {i['answered_non_2xx']:,}. "
        f"Verdict: **{i['verdict']}** "
        + {
            "exact": "(rows = 2xx answers + the requests cut off in flight).",
            "ok": "(every 2xx answer is a row; some requests cut off in flight never "
            "reached the database).",
            "LOST": "(fewer rows than 2xx answers: payments were lost!).",
            "EXTRA": "(more rows than requests sent: duplicate payments!).",
        }[i["verdict"]],
        "",
        "Statuses after settling: "
        + ", ".join(f"{status} {count:,}" for status, count in sorted(i["statuses"].items()))
        + ("" if i["settled"] else " — **some payments were still open after 60 s**"),
        "",
        "### Memory (VmRSS, MiB)",
        "",
        (
            f"{o['soak']} s soak at c64, after the other runs have warmed every process up; "
            "growth is the end of the soak against its start."
            if report["memory_kind"] == "soak"
            else "No soak run (use `--full` or `--soak 120`): end of the last gateway run "
            "against the RSS after the warm-up."
        ),
        "",
        "| process | after warm-up | start | end | peak | VmHWM | growth | flag |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in report["memory"]:
        out.append(
            f"| {row['process']} | {_mib(row['after_warmup_mib'])} | {_mib(row['start_mib'])} "
            f"| {_mib(row['end_mib'])} | {_mib(row['peak_mib'])} | {_mib(row['hwm_mib'])} "
            f"| {row['growth_pct']:+.1f} % | {row['flag']} |"
        )
    out += ["", "### Targets (issue 5)", "", "| target | value | met |", "| --- | --- | --- |"]
    for t in report["targets"]:
        out.append(f"| {t['target']} | {t['value']} | {'yes' if t['met'] else '**no**'} |")
    notes = _notes(report)
    if notes:
        out += ["", "### Notes", "", *[f"- {note}" for note in notes]]
    out += ["", f"Total benchmark time: {report['elapsed_s']:.0f} s.", ""]
    return "\n".join(out)


def _notes(report: dict[str, Any]) -> list[str]:
    notes = []
    for entry in report["logs"]:
        if not (entry["error"] or entry["traceback"] or entry["warning"]):
            continue
        common = "; ".join(f"{m['count']}x `{m['message']}`" for m in entry["messages"])
        notes.append(
            f"`{entry['file']}`: {entry['error']} error, {entry['warning']} warning line(s), "
            f"{entry['traceback']} traceback(s). Commonest: {common}"
        )
    for r in report["runs"] + report["limits"]:
        other = r["db_other_clients_statements"]
        if other and r["db_statements"] and other > 0.05 * r["db_statements"]:
            notes.append(
                f"'{r['name']}': other clients sent {other:,} statements to the shared MariaDB "
                "server during the run (not counted as gateway round trips)"
            )
        if r["background_cpu_pct"] > BACKGROUND_NOTE_PCT:
            notes.append(
                f"'{r['name']}': processes outside the benchmark used "
                f"{r['background_cpu_pct']:.0f} % of the machine's CPU during the run: "
                "the numbers are lower than on a quiet machine"
            )
        if r["worker_restarts"]:
            notes.append(f"'{r['name']}': a worker was restarted during the run")
        codes = {c: n for c, n in r["statuses"].items() if not c.startswith("2")}
        if codes:
            notes.append(f"'{r['name']}': non-2xx answers by status: {codes}")
    return notes


def write_results(report: dict[str, Any], markdown: str) -> list[Path]:
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = json.dumps(report, indent=2, sort_keys=False) + "\n"
    if report["quick"]:
        names = ["latest-quick"]
    else:
        stamp = datetime.fromisoformat(report["date"]).strftime("%Y%m%dT%H%M%SZ")
        names = ["latest", stamp]
    written = []
    for name in names:
        for suffix, text in ((".md", markdown), (".json", payload)):
            path = RESULTS / f"{name}{suffix}"
            path.write_text(text)
            written.append(path)
    return written


# ---------------------------------------------------------------------------------------------
# The session


def gateway_environment(db: BenchDatabase, bank: Service, data_dir: Path) -> dict[str, str]:
    return {
        "DATABASE_URL": db.url,
        "BANK_URL": bank.url,
        "BANK_TIMEOUT_SECONDS": str(BANK_TIMEOUT_SECONDS),
        "DATA_DIR": str(data_dir),
        "LOG_LEVEL": "WARNING",
        "DEMO_MERCHANTS": "true",
        "AUTO_MIGRATE": "true",
        "RECONCILE_INTERVAL_SECONDS": str(RECONCILE_INTERVAL_SECONDS),
        "APP_ENV": "development",
    }


def bank_environment() -> dict[str, str]:
    return {
        "LOG_LEVEL": "WARNING",
        "PENDING_SETTLE_SECONDS": str(PENDING_SETTLE_SECONDS),
        # The bound that keeps a long load test from growing the simulator without end; the
        # reconciler only ever asks about deposits a few seconds old.
        "MAX_TRANSACTIONS": str(BANK_MAX_TRANSACTIONS),
    }


def redact(environment: dict[str, str], db: BenchDatabase) -> dict[str, str]:
    return {k: v.replace(db.password, "***") for k, v in environment.items()}


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


def start_stack(options: Options, bench: Bench, workdir: Path) -> dict[str, str]:
    """Database, bank simulator and gateway, ready to serve; returns the gateway's environment."""
    assert bench.db is not None
    bench.db.create()
    method = "userstat" if bench.db.userstat else "global Questions"
    log(f"database {bench.db.name} (statement counting: {method})")
    bench.services["bank"] = bank = start_service(
        "bank", "bank_simulator.main:app", workers=1, env=bank_environment()
    )
    wait_until_ready(bank, workers=1)
    environment = gateway_environment(bench.db, bank, workdir / "gateway-data")
    bench.services["gateway"] = gateway = start_service(
        "gateway", "payment_gateway.main:app", workers=options.gateway_workers, env=environment
    )
    wait_until_ready(gateway, workers=options.gateway_workers)
    return environment


def measure_gateway(options: Options, bench: Bench) -> tuple[list[RunResult], list[MemoryRow]]:
    """Warm-up, the headline runs, the mixed run and the optional soak; memory per process."""
    watched = ["gateway", "bank"]
    bench.warm_up("gateway", "payments", options.warmup)
    rss_after_warmup = rss_snapshot_mib(bench.processes(watched))
    plan = [
        ("gateway 4242", "payments", 16, options.duration),
        ("gateway 4242", "payments", 64, options.duration),
        ("gateway mixed outcomes", "mixed", 64, options.duration),
    ]
    if options.soak:
        plan.append(("soak 4242", "payments", 64, options.soak))
    runs: list[RunResult] = []
    series: list[dict[str, RssSeries]] = []
    for name, mode, connections, seconds in plan:
        result, samples = bench.measure(
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
    hwm = hwm_snapshot_mib(bench.processes(watched))
    return runs, memory_rows(rss_after_warmup, span, peaks, hwm)


def measure_limits(options: Options, bench: Bench) -> list[RunResult]:
    """The reference limit: the bank simulator alone, then the bare FastAPI endpoint, at c64."""
    bench.warm_up("bank", "deposit", options.warmup)
    bank, _ = bench.measure(
        "bank simulator alone (deposit)",
        "bank",
        "deposit",
        connections=64,
        seconds=options.duration,
        watch=["bank"],
    )
    stop_service(bench.services["bank"])
    bench.services["bare"] = start_service(
        "bare", "bare_app:app", workers=options.gateway_workers, env={}, app_dir=BENCH
    )
    wait_until_ready(bench.services["bare"], workers=options.gateway_workers)
    bench.warm_up("bare", "payments", options.warmup)
    bare, _ = bench.measure(
        "bare FastAPI endpoint",
        "bare",
        "payments",
        connections=64,
        seconds=options.duration,
        watch=["bare"],
    )
    stop_service(bench.services["bare"])
    return [bank, bare]


def run_session(options: Options, bench: Bench, workdir: Path) -> dict[str, Any]:
    started = datetime.now(UTC)
    clock = time.monotonic()
    assert bench.db is not None
    environment = start_stack(options, bench, workdir)
    runs, memory = measure_gateway(options, bench)

    log("waiting for open payments to settle, then counting rows")
    integrity = check_integrity(bench)
    log(
        f"  rows {integrity.payment_rows:,}, 2xx {integrity.answered_2xx:,}, "
        f"in flight {integrity.unanswered}: {integrity.verdict}"
    )
    stop_service(bench.services["gateway"])

    limits = measure_limits(options, bench)
    return build_report(
        options,
        machine_info(bench.db.version(), bench.wrk),
        runs,
        limits,
        integrity,
        memory,
        "soak" if options.soak else "runs",
        [scan_log(service.log_path) for service in bench.services.values()],
        redact(environment, bench.db),
        started,
        time.monotonic() - clock,
    )


def cleanup(bench: Bench, admin: MariaDB | None, workdir: Path) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not stop the clean-up
    try:
        for service in bench.services.values():
            if not service.log_file.closed:
                log(f"stopping {service.name}")
                stop_service(service)
        if bench.db is not None:
            bench.db.drop(keep=bench.options.keep_db)
        if admin is not None:
            admin.close()
        shutil.rmtree(workdir, ignore_errors=True)
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "wrk.log").write_text("")
    bench = Bench(options, ensure_wrk())
    admin: MariaDB | None = None
    workdir = Path(tempfile.mkdtemp(prefix="pgw-bench-"))
    with terminate_on_signals():
        try:
            admin = MariaDB()
            bench.db = BenchDatabase(admin)
            report = run_session(options, bench, workdir)
        except KeyboardInterrupt:
            log("interrupted")
            return 130
        finally:
            cleanup(bench, admin, workdir)
    markdown = render_markdown(report)
    written = write_results(report, markdown)
    print()
    print(markdown)
    log("wrote " + ", ".join(str(p.relative_to(REPO)) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
