"""The simulator as a real process: ``uvicorn bank_simulator.main:app`` configured by env."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


async def test_operations_over_http(simulator: tuple[str, Path]) -> None:
    """authorize → partial capture → 50 racing refunds over real sockets → exactly 3 pass;
    authorize → void → capture refused; the 5126 card's refunds are declined."""
    base_url, log_path = simulator
    headers = {"Authorization": f"Bearer {API_KEY}"}
    limits = httpx.Limits(max_connections=50)
    async with httpx.AsyncClient(
        base_url=base_url, timeout=10, headers=headers, limits=limits
    ) as client:

        async def deposit(reference: str, number: str, capture: bool) -> dict[str, Any]:
            body = {
                "reference": reference,
                "card": {"number": number, "expiry": "12/2042", "cvv": "321"},
                "amount": 1000,
                "currency": "EUR",
                "capture": capture,
            }
            response = await client.post("/api/v1/deposit", json=body)
            assert response.status_code == 201
            return dict(response.json())

        async def operate(collection: str, **body: Any) -> httpx.Response:
            return await client.post(f"/api/v1/{collection}", json=body)

        assert (await deposit("hold", "4242424242424242", False))["status"] == "authorized"
        capture = await operate("captures", reference="c1", deposit_reference="hold", amount=100)
        assert capture.status_code == 201
        refunds = await asyncio.gather(
            *(
                operate("refunds", reference=f"r{i}", deposit_reference="hold", amount=30)
                for i in range(50)
            )
        )
        assert sorted(r.status_code for r in refunds) == [201] * 3 + [422] * 47
        state = (await client.get("/api/v1/deposits/hold")).json()
        assert (state["status"], state["captured_amount"], state["refunded_amount"]) == (
            "succeeded",
            100,
            90,
        )
        passed = [r.json()["reference"] for r in refunds if r.status_code == 201]
        for reference in passed:
            inquiry = await client.get(f"/api/v1/refunds/{reference}")
            assert (inquiry.status_code, inquiry.json()["status"]) == (200, "succeeded")

        await deposit("to-void", "4242424242424242", False)
        void = await operate("voids", reference="v1", deposit_reference="to-void")
        assert (void.status_code, void.json()["amount"]) == (201, 1000)
        late = await operate("captures", reference="c2", deposit_reference="to-void", amount=1)
        assert late.status_code == 409
        assert late.headers["content-type"] == "application/problem+json"
        assert (await client.get("/api/v1/deposits/to-void")).json()["status"] == "voided"

        await deposit("declines", "4000000000005126", True)
        declined = await operate("refunds", reference="r-d", deposit_reference="declines", amount=5)
        assert declined.status_code == 201
        assert declined.json()["reason"] == "refund_declined"

    log = log_path.read_text()
    assert "refund reference='r-d'" in log
    assert "4000000000005126" not in log
    assert API_KEY not in log


def test_three_d_secure_over_http(simulator: tuple[str, Path]) -> None:
    """A challenge card: authentication → the challenge page in the 'browser' (no key) → code
    1234 → 303 to return_url → the result read with the key → the deposit succeeds."""
    base_url, log_path = simulator
    card = "4000000000003220"
    return_url = "http://127.0.0.1:1/3ds/return?p=1"
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.Client(base_url=base_url, timeout=5, headers=headers) as client:
        created = client.post(
            "/api/v1/3ds/authentications",
            json={
                "reference": "3ds-1",
                "card": {"number": card, "expiry": "12/2042"},
                "amount": 1234,
                "currency": "EUR",
                "return_url": return_url,
            },
        )
        assert created.status_code == 201
        authentication = created.json()
        # PUBLIC_URL defaults to where the simulator listens (its PORT).
        assert authentication["challenge_url"] == (
            f"{base_url}/3ds/challenge/{authentication['id']}"
        )
    with httpx.Client(timeout=5) as browser:
        page = browser.get(authentication["challenge_url"])
        assert page.status_code == 200
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        answer = browser.post(
            authentication["challenge_url"], data={"csrf_token": token, "code": "1234"}
        )
        assert (answer.status_code, answer.headers["location"]) == (303, return_url)
    with httpx.Client(base_url=base_url, timeout=5, headers=headers) as client:
        result = client.get("/api/v1/3ds/authentications/3ds-1").json()
        assert (result["status"], result["eci"]) == ("authenticated", "05")
        deposit = client.post(
            "/api/v1/deposit",
            json={
                "reference": "3ds-deposit",
                "card": {"number": card, "expiry": "12/2042", "cvv": "321"},
                "amount": 1234,
                "currency": "EUR",
                "three_d_secure": {"authentication_id": authentication["id"]},
            },
        )
        assert deposit.json()["status"] == "succeeded"

    log = log_path.read_text()
    assert "3ds challenge id=" in log
    assert card not in log
    assert token not in log
