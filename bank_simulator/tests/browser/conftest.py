"""The simulator as a real process for the browser, and a shop to come back to.

One simulator per module (uvicorn with the production flags, ``PUBLIC_URL`` set to where it
listens, so ``challenge_url`` is reachable), and one tiny HTTP server standing in for the shop:
the 303 after the challenge lands there, and it records every request it gets.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from live_services import Service, free_port, start_service

CHALLENGE_PAN = "4000000000003220"
API_KEY = "browser-test-bank-key-0123456789abcdef"


class ReturnSite:
    """A local HTTP server recording the path and query of every request it answers."""

    def __init__(self) -> None:
        self.visits: list[str] = []
        visits = self.visits

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                visits.append(self.path)
                body = b"<!doctype html><html lang=en><title>Shop</title><h1>Back at the shop</h1>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, reference: str) -> str:
        """The return URL of one authentication, with a query to be kept as it is."""
        return f"{self.origin}/3ds/return?reference={reference}&x=%2F"

    def visits_of(self, reference: str) -> list[str]:
        return [v for v in self.visits if f"reference={reference}&" in v]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


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
