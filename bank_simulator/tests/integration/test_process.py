"""The simulator as a real process: ``uvicorn bank_simulator.main:app`` configured by env."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.e2e

PAN = "4000000000009995"
API_KEY = "process-test-bank-key-0123456789abcdef"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_healthy(base_url: str, process: subprocess.Popen[bytes], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"simulator exited with {process.returncode}")
        try:
            if httpx.get(f"{base_url}/healthz", timeout=0.5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError("simulator did not become healthy")


@pytest.fixture(params=["uvicorn", "module"])
def simulator(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """Start the simulator from an unrelated directory; yield its URL and its log file."""
    port = _free_port()
    env = os.environ | {
        "PENDING_SETTLE_SECONDS": "0.2",
        "LOG_LEVEL": "DEBUG",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "BANK_API_KEY": API_KEY,
    }
    if request.param == "uvicorn":
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            "bank_simulator.main:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
        ]
    else:
        command = [sys.executable, "-m", "bank_simulator"]
    log_path = tmp_path / "simulator.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log, stderr=log)
        base_url = f"http://127.0.0.1:{port}"
        try:
            _wait_healthy(base_url, process)
            yield base_url, log_path
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_deposit_over_http(simulator: tuple[str, Path]) -> None:
    base_url, log_path = simulator
    body = {
        "reference": "e2e-1",
        "card": {"number": PAN, "expiry": "12/2042", "cvv": "321", "holder_name": None},
        "amount": 1234,
        "currency": "EUR",
    }
    with httpx.Client(base_url=base_url, timeout=5) as anonymous:
        refused = anonymous.post("/api/v1/deposit", json=body)
        assert refused.status_code == 401
        assert refused.headers["content-type"] == "application/problem+json"
        assert anonymous.get("/api/v1/deposits/e2e-1").status_code == 401
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.Client(base_url=base_url, timeout=5, headers=headers) as client:
        created = client.post("/api/v1/deposit", json=body)
        assert created.status_code == 201
        assert created.json()["status"] == "pending"

        repeat = client.post("/api/v1/deposit", json=body)
        assert repeat.status_code == 200
        assert repeat.json()["transaction_id"] == created.json()["transaction_id"]

        time.sleep(0.25)
        settled = client.get("/api/v1/deposits/e2e-1")
        assert settled.json()["status"] == "succeeded"

        invalid = client.post(
            "/api/v1/deposit", content=b"{", headers={"content-type": "application/json"}
        )
        assert invalid.status_code == 422
        assert invalid.headers["content-type"] == "application/problem+json"

    log = log_path.read_text()
    assert "e2e-1" in log
    assert PAN not in log
    assert "cvv" not in log.lower()
    assert API_KEY not in log
