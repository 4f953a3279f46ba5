"""The gateway and the bank simulator as real processes for the browser, and a shop.

One of each per module: the simulator (with its API key and ``PUBLIC_URL``), the gateway on
its embedded SQLite with the demo merchants (``PUBLIC_URL`` and ``BANK_PUBLIC_URL`` set to
where they listen), and a tiny HTTP server for the shop, where ``success_url`` and
``cancel_url`` land and every visit is recorded.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from live_services import Service, deposits_logged, free_port, start_service
from playwright.async_api import Page
from return_site import ReturnSite

BANK_API_KEY = "browser-test-bank-key-0123456789abcdef"
MERCHANT = {"Authorization": "Bearer first_merchant_mock_token"}


@dataclass
class Stack:
    gateway: Service
    bank: Service
    shop: ReturnSite

    def api(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.gateway.url, headers=MERCHANT, timeout=10)

    async def call(self, method: str, path: str, status: int = 200, **request: Any) -> Any:
        """The merchant's API: the JSON answer, which must come with ``status``."""
        async with self.api() as api:
            response = await api.request(method, path, **request)
        assert response.status_code == status, response.text
        return response.json()

    async def create_session(self, **overrides: object) -> dict[str, Any]:
        """A checkout session of the demo merchant, coming back to the shop."""
        order = uuid.uuid4().hex[:12]
        body: dict[str, object] = {
            "amount": 4250,
            "currency": "EUR",
            "reference": f"order-{order}",
            "success_url": f"{self.shop.origin}/thanks?order={order}",
            "cancel_url": f"{self.shop.origin}/cart?order={order}",
        }
        body.update(overrides)
        created: dict[str, Any] = await self.call(
            "POST", "/api/v1/checkout-sessions", 201, json=body
        )
        return created

    async def create_payment(self, body: dict[str, object]) -> dict[str, Any]:
        """A payment of the demo merchant, made through the API (the merchant's own page)."""
        created: dict[str, Any] = await self.call("POST", "/api/v1/payments", 201, json=body)
        return created

    async def payment(self, payment_id: str) -> dict[str, Any]:
        found: dict[str, Any] = await self.call("GET", f"/api/v1/payments/{payment_id}")
        return found

    async def session(self, session_id: str) -> dict[str, Any]:
        found: dict[str, Any] = await self.call("GET", f"/api/v1/checkout-sessions/{session_id}")
        return found

    async def payments(self, reference: str) -> list[dict[str, Any]]:
        """The merchant's payments of one order, newest first."""
        page = await self.call("GET", "/api/v1/payments", params={"reference": reference})
        found: list[dict[str, Any]] = page["data"]
        return found

    async def expire(self, session_id: str) -> None:
        await self.call("POST", f"/api/v1/checkout-sessions/{session_id}/expire")

    async def deposit(self, payment_id: str) -> dict[str, Any]:
        """What the bank recorded of a payment (its deposit, by the payment id)."""
        return await self._bank_record(f"/api/v1/deposits/{payment_id}")

    async def authentication(self, payment_id: str) -> dict[str, Any]:
        """The bank's 3-D Secure authentication of a payment (by the payment id)."""
        return await self._bank_record(f"/api/v1/3ds/authentications/{payment_id}")

    async def has_deposit(self, payment_id: str) -> bool:
        return (await self._bank_get(f"/api/v1/deposits/{payment_id}")).status_code != 404

    def deposits_made(self) -> int:
        """How many deposits the bank has recorded so far (from its log)."""
        return len(deposits_logged(self.bank))

    async def _bank_record(self, path: str) -> dict[str, Any]:
        response = await self._bank_get(path)
        assert response.status_code == 200, response.text
        recorded: dict[str, Any] = response.json()
        return recorded

    async def _bank_get(self, path: str) -> httpx.Response:
        async with httpx.AsyncClient(
            base_url=self.bank.url,
            headers={"Authorization": f"Bearer {BANK_API_KEY}"},
            timeout=10,
        ) as bank:
            return await bank.get(path)

    def visits(self, path: str, session: dict[str, Any]) -> list[str]:
        """The shop's visits of ``path`` for this session's order."""
        order = session["reference"].removeprefix("order-")
        return [v for v in self.shop.visits if v.startswith(f"{path}?order={order}")]


async def answer_challenge(page: Page, code: str) -> None:
    """On the bank simulator's page: type the one-time code and submit it."""
    await page.get_by_role("heading", name="Your bank wants to confirm it's you").wait_for()
    await page.get_by_label("One-time code").fill(code)
    await page.get_by_role("button", name="Submit").click()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    shop = ReturnSite()
    bank_port, gateway_port = free_port(), free_port()
    bank_url, gateway_url = f"http://127.0.0.1:{bank_port}", f"http://127.0.0.1:{gateway_port}"
    bank = start_service(
        "bank",
        "bank_simulator.main:app",
        bank_port,
        tmp_path_factory.mktemp("bank"),
        {"PUBLIC_URL": bank_url, "BANK_API_KEY": BANK_API_KEY, "LOG_LEVEL": "INFO"},
    )
    workdir: Path = tmp_path_factory.mktemp("gateway")
    env = {
        "APP_ENV": "development",
        "BANK_URL": bank_url,
        "BANK_API_KEY": BANK_API_KEY,
        "PUBLIC_URL": gateway_url,
        "BANK_PUBLIC_URL": bank_url,
        "METRICS_PORT": "0",
        "RECONCILE_INTERVAL_SECONDS": "0.5",
        "RATE_LIMIT_UNAUTHENTICATED_PER_SECOND": "200",
    }
    try:
        gateway = start_service("gateway", "payment_gateway.main:app", gateway_port, workdir, env)
    except BaseException:
        bank.stop()
        shop.close()
        raise
    yield Stack(gateway, bank, shop)
    gateway.stop()
    bank.stop()
    shop.close()
