"""The gateway's bank adapter and the real bank simulator agree on BANK_API_KEY."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from bank_simulator.app import create_app as create_bank
from bank_simulator.config import Settings as BankSettings
from payment_gateway.bank.http import HttpBankAdapter
from payment_gateway.domain.bank import BankAnswer, BankFault
from payment_gateway.domain.payment import PaymentRequest
from pydantic import SecretStr

KEY = "integration-shared-bank-key-0123456789"
REQUEST = PaymentRequest(
    pan="4242424242424242",
    cvv="123",
    expiry_month=12,
    expiry_year=2042,
    holder_name="John Doe",
    amount=1000,
    currency="USD",
    reference="order-1",
)

AdapterFactory = Callable[[str | None], Any]


@pytest.fixture
async def adapter_to_bank() -> AsyncIterator[AdapterFactory]:
    bank = create_bank(BankSettings(bank_api_key=SecretStr(KEY)))
    adapters: list[HttpBankAdapter] = []

    def make(api_key: str | None) -> HttpBankAdapter:
        transport = httpx.ASGITransport(app=bank)
        adapter = HttpBankAdapter("http://bank", 2.0, api_key=api_key, transport=transport)
        adapters.append(adapter)
        return adapter

    yield make
    for adapter in adapters:
        await adapter.aclose()


async def test_with_the_key_the_bank_charges_and_answers(adapter_to_bank: AdapterFactory) -> None:
    adapter = adapter_to_bank(KEY)
    charged = await adapter.deposit("payment-1", REQUEST)
    assert isinstance(charged, BankAnswer)
    assert charged.code == "0"
    known = await adapter.inquire("payment-1")
    assert isinstance(known, BankAnswer)
    assert known.transaction_id == charged.transaction_id


@pytest.mark.parametrize("api_key", [None, "a-wrong-key"])
async def test_without_the_right_key_the_bank_refuses_and_records_nothing(
    adapter_to_bank: AdapterFactory, api_key: str | None
) -> None:
    adapter = adapter_to_bank(api_key)
    # Refused before anything was recorded: the payment fails as bank_rejected, never charged.
    assert await adapter.deposit("payment-2", REQUEST) is BankFault.REJECTED
    assert await adapter_to_bank(KEY).inquire("payment-2") is None
