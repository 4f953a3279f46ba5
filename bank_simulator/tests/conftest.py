from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Protocol

import httpx
import pytest
from bank_simulator.app import create_app
from bank_simulator.config import Settings
from bank_simulator.ledger import Clock, Ledger
from fastapi import FastAPI


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
    amount: object = 1000,
    currency: str = "USD",
    capture: bool | None = None,
    **card: object,
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


class MakeDepositBody(Protocol):
    def __call__(
        self,
        reference: str = ...,
        number: str = ...,
        amount: object = ...,
        currency: str = ...,
        capture: bool | None = ...,
        **card: object,
    ) -> dict[str, Any]: ...


@pytest.fixture
def deposit_body() -> MakeDepositBody:
    """``deposit_body(reference=..., number=..., amount=..., currency=..., capture=...,
    **card_fields)``."""
    return _deposit_body


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


class BankClient(httpx.AsyncClient):
    """An in-process client of the app, with the app and its ledger at hand."""

    def __init__(self, app: FastAPI) -> None:
        super().__init__(transport=httpx.ASGITransport(app=app), base_url="http://bank.test")
        self.app = app
        self.ledger: Ledger = app.state.ledger


class ClientFactory(Protocol):
    def __call__(
        self, clock: Clock | None = None, **overrides: Any
    ) -> AbstractAsyncContextManager[BankClient]: ...


@pytest.fixture
def make_client() -> ClientFactory:
    """``async with make_client(latency_ms=5, clock=...) as client`` — an in-process client."""

    @asynccontextmanager
    async def factory(clock: Clock | None = None, **overrides: Any) -> AsyncIterator[BankClient]:
        settings = Settings(**overrides)
        app = create_app(settings) if clock is None else create_app(settings, clock=clock)
        async with BankClient(app) as client:
            yield client

    return factory


@pytest.fixture
async def client(make_client: ClientFactory) -> AsyncIterator[BankClient]:
    async with make_client() as c:
        yield c
