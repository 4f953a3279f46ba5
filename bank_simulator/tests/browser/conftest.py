"""The simulator as a real process for the browser, and a shop to come back to.

One simulator per module (uvicorn with the production flags, ``PUBLIC_URL`` set to where it
listens, so ``challenge_url`` is reachable), and one tiny HTTP server standing in for the shop:
the 303 after the challenge lands there, and it records every request it gets.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from live_services import Service, free_port, start_service
from return_site import ReturnSite

CHALLENGE_PAN = "4000000000003220"
API_KEY = "browser-test-bank-key-0123456789abcdef"


@dataclass
class Challenge:
    reference: str
    url: str  # the challenge page
    return_url: str


@dataclass
class Simulator:
    service: Service
    shop: ReturnSite

    async def start_challenge(self, amount: int = 123456, currency: str = "EUR") -> Challenge:
        """Start an authentication of the challenge card, through the API."""
        reference = f"browser-{uuid.uuid4().hex[:12]}"
        return_url = self.shop.url(reference)
        body = {
            "reference": reference,
            "card": {"number": CHALLENGE_PAN, "expiry": "12/2042", "holder_name": None},
            "amount": amount,
            "currency": currency,
            "return_url": return_url,
        }
        async with self._api() as api:
            response = await api.post("/api/v1/3ds/authentications", json=body)
        assert response.status_code == 201, response.text
        started: dict[str, Any] = response.json()
        assert started["status"] == "challenge_required"
        assert started["challenge_url"].startswith(self.service.url + "/3ds/challenge/")
        return Challenge(reference, started["challenge_url"], return_url)

    async def authentication(self, reference: str) -> dict[str, Any]:
        """What the simulator recorded (``GET /api/v1/3ds/authentications/{reference}``)."""
        async with self._api() as api:
            response = await api.get(f"/api/v1/3ds/authentications/{reference}")
        assert response.status_code == 200, response.text
        recorded: dict[str, Any] = response.json()
        return recorded

    def _api(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.service.url,
            headers={"Authorization": f"Bearer {API_KEY}"},
            timeout=5,
        )


@pytest.fixture(scope="module")
def shop() -> Iterator[ReturnSite]:
    site = ReturnSite()
    yield site
    site.close()


@pytest.fixture(scope="module")
def simulator(shop: ReturnSite, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulator]:
    port = free_port()
    workdir: Path = tmp_path_factory.mktemp("bank")
    env = {
        "PUBLIC_URL": f"http://127.0.0.1:{port}",
        "BANK_API_KEY": API_KEY,
        "LOG_LEVEL": "INFO",
    }
    service = start_service("bank", "bank_simulator.main:app", port, workdir, env)
    yield Simulator(service, shop)
    service.stop()
