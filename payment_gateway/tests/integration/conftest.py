"""The gateway app, wired to a real database and an in-memory bank, driven over ASGI."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvloop
from asgi_lifespan import LifespanManager
from cryptography.fernet import Fernet
from fakes import FakeBank
from fastapi import FastAPI
from gateway_pages import assert_page_headers
from payment_gateway.config import Settings
from payment_gateway.main import create_app
from pydantic import SecretStr

MERCHANT_ONE = {"Authorization": "Bearer first_merchant_mock_token"}
MERCHANT_TWO = {"Authorization": "Bearer second_merchant_mock_token"}


# `number` is positional-only, so that `payment_body(**overrides)` never binds it.
def payment_body(number: str = "4242424242424242", /, **overrides: object) -> dict[str, object]:
    body: dict[str, object] = {
        "card": {
            "number": number,
            "expiry_month": 12,
            "expiry_year": 2042,
            "cvv": "123",
            "holder_name": "John Doe",
        },
        "amount": 1000,
        "currency": "USD",
        "reference": "order-1234",
    }
    body.update(overrides)
    return body


@dataclass
class Gateway:
    client: httpx.AsyncClient
    bank: FakeBank
    app: FastAPI
    settings: Settings


# One key for the whole session: the MariaDB database is shared by the session's tests, and a
# gateway refuses to start on data written under other secrets (storage/key_checks.py).
CARD_KEY = Fernet.generate_key().decode()
HASH_KEY = "integration-test-hash-key"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def gateway_settings(database_url: str, data_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": database_url,
        "data_dir": data_dir,
        "card_encryption_keys": SecretStr(CARD_KEY),
        "idempotency_hash_key": SecretStr(HASH_KEY),
        "merchant_cache_seconds": 0,
        "metrics_port": 0,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def running_gateway(settings: Settings, bank: FakeBank) -> AsyncIterator[Gateway]:
    """The app on ``settings`` and ``bank``, started, with a client over ASGI that checks
    every answer to a browser (``check_page``)."""
    app = create_app(settings, bank=bank, run_reconciler=False)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://gateway",
            event_hooks={"response": [check_page]},
        ) as client:
            yield Gateway(client, bank, app, settings)


BROWSER_PATHS = ("/checkout/", "/3ds/")  # the hosted page and the 3-D Secure return


async def check_page(response: httpx.Response) -> None:
    """Whatever a test does, each answer on a page a browser opens is a redirect or a page
    with every header of a page (gateway_pages.py): its errors (403, 404, 413, 415, 429, 503)
    included."""
    if not response.request.url.path.startswith(BROWSER_PATHS):
        return
    if response.is_redirect:
        assert "location" in response.headers
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["referrer-policy"] == "no-referrer"
        return
    await response.aread()
    assert_page_headers(response)


@pytest.fixture
async def gateway(database_url: str, tmp_path: Path) -> AsyncIterator[Gateway]:
    async with running_gateway(gateway_settings(database_url, tmp_path), FakeBank()) as gw:
        yield gw


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """The bank transport's tests run on asyncio's loop and on uvloop (production's)."""
    if item.path.name == "test_bank_transport.py":
        return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
    return {"asyncio": asyncio.new_event_loop}
