"""Both services as real processes (uvicorn), on free local ports, from a scratch directory."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

# The process helpers are shared with the browser tests (tests/support/live_services.py); the
# e2e tests import them from here.
from live_services import BIN as BIN
from live_services import Service as Service
from live_services import deposits_logged as deposits_logged
from live_services import free_port as free_port
from live_services import start_service as start_service


@dataclass
class Stack:
    bank: Service
    gateway: Service
    workdir: Path
    services: list[Service] = field(default_factory=list)


# Both sides get the shared key, so every e2e test runs the bank calls authenticated.
BANK_API_KEY = "e2e-shared-bank-key-0123456789abcdef"
BANK_AUTH = {"Authorization": f"Bearer {BANK_API_KEY}"}


def mentions_cvv(log: str, cvv: str) -> bool:
    """The CVV as a number of its own in the log: not inside a hex id or a timestamp's
    microseconds, where any four digits turn up sooner or later."""
    return re.search(rf"(?<![0-9a-fA-F]){cvv}(?![0-9a-fA-F])", log) is not None


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


@contextmanager
def running_stack(workdir: Path, **gateway_overrides: str) -> Iterator[Stack]:
    """The bank and a two-worker gateway in front of it, stopped on the way out."""
    bank = start_service("bank", "bank_simulator.main:app", free_port(), workdir, bank_env())
    try:
        gateway = start_service(
            "gateway",
            "payment_gateway.main:app",
            free_port(),
            workdir,
            gateway_env(workdir, bank.url, **gateway_overrides),
            "--workers",
            "2",
        )
    except Exception:
        bank.stop()
        raise
    try:
        yield Stack(bank, gateway, workdir)
    finally:
        gateway.stop()
        bank.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("stack")) as services:
        yield services
