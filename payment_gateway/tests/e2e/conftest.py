"""Both services as real processes (uvicorn), on free local ports, from a scratch directory."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

BIN = Path(sys.executable).parent

# The production server flags of each app (README.md, Running it in production; the deployment
# tests check that every launcher uses them), so every e2e test runs the hardened server. Flags
# a test passes after them win (click takes the last value of an option).
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


@dataclass
class Stack:
    bank: Service
    gateway: Service
    workdir: Path
    services: list[Service] = field(default_factory=list)


# Both sides get the shared key, so every e2e test runs the bank calls authenticated.
BANK_API_KEY = "e2e-shared-bank-key-0123456789abcdef"
BANK_AUTH = {"Authorization": f"Bearer {BANK_API_KEY}"}


def deposits_logged(bank: Service, reference: str | None = None) -> list[str]:
    """The bank's log line for each deposit it recorded (a replayed one says so)."""
    pattern = re.compile(r"deposit reference='([^']+)' status=\S+ .* (created|replayed)")
    lines = list(pattern.finditer(bank.log()))
    return [
        m.group(1) for m in lines if m.group(2) == "created" and reference in (None, m.group(1))
    ]


def bank_deposit(bank: Service, payment_id: str) -> dict[str, object]:
    """The bank's own record of a deposit (its inquiry endpoint)."""
    response = httpx.get(f"{bank.url}/api/v1/deposits/{payment_id}", headers=BANK_AUTH)
    assert response.status_code == 200
    deposit: dict[str, object] = response.json()
    return deposit


def post_concurrently(
    urls: Sequence[str], body: dict[str, object], headers: dict[str, str]
) -> list[httpx.Response]:
    """POST the same body to every URL at once (a URL may repeat), answers in that order."""

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=30) as client:
            return await asyncio.gather(
                *(client.post(url, json=body, headers=headers) for url in urls)
            )

    return asyncio.run(burst())


def bank_env(**overrides: str) -> dict[str, str]:
    return {
        "PENDING_SETTLE_SECONDS": "1",
        "LOG_LEVEL": "INFO",
        "BANK_API_KEY": BANK_API_KEY,
        **overrides,
    }


def gateway_env(workdir: Path, bank_url: str, **overrides: str) -> dict[str, str]:
    return {
        "DATA_DIR": str(workdir / "var"),
        "BANK_URL": bank_url,
        "BANK_TIMEOUT_SECONDS": "2",
        "RECONCILE_INTERVAL_SECONDS": "0.3",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "DEBUG",
        "APP_ENV": "development",
        "METRICS_PORT": "0",  # test runs side by side must not compete for 9464
        "BANK_API_KEY": BANK_API_KEY,
        **overrides,
    }


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("stack")
    bank = start_service("bank", "bank_simulator.main:app", free_port(), workdir, bank_env())
    try:
        gateway = start_service(
            "gateway",
            "payment_gateway.main:app",
            free_port(),
            workdir,
            gateway_env(workdir, bank.url),
            "--workers",
            "2",
        )
    except Exception:
        bank.stop()
        raise
    yield Stack(bank, gateway, workdir)
    gateway.stop()
    bank.stop()
