"""The services as real processes: ``uvicorn`` on a free local port, started from a scratch
directory with the production server flags, stopped with their whole process group.

Shared by every test tree (on pytest's ``pythonpath``): the gateway's e2e tests, and the browser
tests of both services (``browser_testing`` drives the browser, this module the servers).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent

# The production server flags of each app (README.md, Running it in production; the deployment
# tests check that every launcher uses them), so every e2e and browser test runs the hardened
# server. Flags a test passes after them win (click takes the last value of an option).
SERVER_FLAGS = {
    "payment_gateway.main:app": [
        "--http",
        "payment_gateway.http_server:BoundedHttpToolsProtocol",
        "--limit-concurrency",
        "1024",
        "--timeout-keep-alive",
        "5",
        "--no-server-header",
    ],
    "bank_simulator.main:app": [
        "--limit-concurrency",
        "2048",
        "--timeout-keep-alive",
        "5",
        "--no-server-header",
    ],
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Service:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def deposits_logged(bank: Service, reference: str | None = None) -> list[str]:
    """The references of the deposits the bank simulator logged it created (a replay is
    logged as such, and not counted), optionally only ``reference``'s."""
    pattern = re.compile(r"deposit reference='([^']+)' status=\S+ .* (created|replayed)")
    lines = list(pattern.finditer(bank.log()))
    return [
        m.group(1) for m in lines if m.group(2) == "created" and reference in (None, m.group(1))
    ]


def start_service(
    name: str, app: str, port: int, workdir: Path, env: dict[str, str], *extra: str
) -> Service:
    log_path = workdir / f"{name}.log"
    process = subprocess.Popen(
        [
            str(BIN / "uvicorn"),
            app,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            *SERVER_FLAGS[app],
            *extra,
        ],
        cwd=workdir,  # any directory will do: nothing is looked up relative to it but var/
        env={**os.environ, **env},
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, so workers die with it
    )
    service = Service(name, f"http://127.0.0.1:{port}", process, log_path)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited at start:\n{service.log()}")
        try:
            if httpx.get(f"{service.url}/healthz", timeout=1).status_code == 200:
                return service
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    service.stop(signal.SIGKILL)
    raise RuntimeError(f"{name} did not become healthy:\n{service.log()}")
