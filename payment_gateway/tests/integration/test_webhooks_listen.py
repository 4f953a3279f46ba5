"""`python -m payment_gateway webhooks listen`, run as a process, fed signed requests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from payment_gateway.domain.webhooks import WebhookMessage, new_webhook_secret
from payment_gateway.webhooks.addresses import UrlGuard
from payment_gateway.webhooks.sender import HttpWebhookSender

from .conftest import free_port

SECRET = new_webhook_secret()
EVENT = {
    "id": "evt_42",
    "type": "payment.succeeded",
    "created_at": "2026-11-25T12:00:00Z",
    "data": {"object": {"id": "pay_7", "status": "succeeded", "amount": 1000}},
}


def start(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    # No DATABASE_URL, no settings: an empty working directory and a bare environment.
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "payment_gateway",
            "webhooks",
            "listen",
            "--port",
            str(port),
            "--secret",
            SECRET,
            *extra,
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    ready = process.stderr.readline()  # printed once the socket is bound
    assert "listening on" in ready, ready
    return process, f"http://127.0.0.1:{port}/"


@pytest.fixture
def stopper() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def finish(process: subprocess.Popen[str]) -> tuple[str, str]:
    process.terminate()
    out, err = process.communicate(timeout=10)
    return out, err


async def send_signed(url: str) -> int | None:
    sender = HttpWebhookSender(UrlGuard(allow_private=True))
    try:
        body = json.dumps(EVENT).encode()
        result = await sender.send(url, WebhookMessage("msg_1", body, (SECRET,)))
    finally:
        await sender.aclose()
    return result.status_code


async def test_prints_verified_events_and_refuses_bad_signatures(
    tmp_path: Path, stopper: list[subprocess.Popen[str]]
) -> None:
    process, url = start(tmp_path)
    stopper.append(process)
    assert await send_signed(url) == 204
    async with httpx.AsyncClient() as client:
        forged = await client.post(
            url,
            content=json.dumps(EVENT).encode(),
            headers={
                "webhook-id": "msg_2",
                "webhook-timestamp": "1",
                "webhook-signature": "v1,bm90IGEgc2lnbmF0dXJl",
            },
        )
        unsigned = await client.post(url, content=b"{}")
    assert forged.status_code == 400
    assert "signature not verified" in forged.text
    assert unsigned.status_code == 400
    assert "Missing required headers" in unsigned.text
    out, err = finish(process)
    (line,) = out.splitlines()
    fields = line.split("\t")
    assert fields[1:] == ["msg_1", "payment.succeeded", "pay_7", "succeeded"]
    assert fields[0].endswith("Z")
    assert err.count("rejected:") == 2


async def test_json_prints_the_whole_body(
    tmp_path: Path, stopper: list[subprocess.Popen[str]]
) -> None:
    process, url = start(tmp_path, "--json")
    stopper.append(process)
    assert await send_signed(url) == 204
    out, _ = finish(process)
    assert json.loads(out) == EVENT


def test_a_secret_that_is_not_a_whsec_secret_is_refused(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "payment_gateway", "webhooks", "listen", "--secret", "nope"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "whsec_" in result.stderr
