from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx
import pytest
from bank_simulator.app import create_app
from bank_simulator.config import Settings


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _deposit_body(
    reference: str = "ref-1",
    number: str = "4242424242424242",
    amount: Any = 1000,
    currency: str = "USD",
    capture: Any = None,
    **card: Any,
) -> dict[str, Any]:
    body = {
        "reference": reference,
        "card": {"number": number, "expiry": "12/2042", "cvv": "123", "holder_name": "John Doe"}
        | card,
        "amount": amount,
        "currency": currency,
    }
    if capture is not None:  # absent unless asked for: the default must stay "capture at once"
        body["capture"] = capture
    return body


@pytest.fixture
def deposit_body() -> Callable[..., dict[str, Any]]:
    """``deposit_body(reference=..., number=..., amount=..., currency=..., capture=...,
    **card_fields)``."""
    return _deposit_body


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


ClientFactory = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def make_client() -> ClientFactory:
    """``async with make_client(latency_ms=5, clock=...) as client`` — an in-process client.

    The app is reachable as ``client.app`` and its ledger as ``client.ledger``.
    """

    @asynccontextmanager
    async def factory(clock: Any = None, **overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
        settings = Settings(**overrides)
        app = create_app(settings) if clock is None else create_app(settings, clock=clock)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bank.test") as client:
            client.app = app  # type: ignore[attr-defined]
            client.ledger = app.state.ledger  # type: ignore[attr-defined]
            yield client

    return factory


@pytest.fixture
async def client(make_client: ClientFactory) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client() as c:
        yield c
