"""The services under test: uvicorn processes, each in its own process group."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from bench.paths import REPO, RESULTS_DIR
from bench.procfs import cmdline, cpu_ticks, descendants
from bench.progress import log


@dataclass(frozen=True)
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
    log_path = RESULTS_DIR / f"{name}.log"
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
