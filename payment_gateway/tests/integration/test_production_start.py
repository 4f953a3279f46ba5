"""What production refuses at start, and what a development run must not leave behind."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager
from cryptography.fernet import Fernet
from fakes import FakeBank
from payment_gateway.config import Settings
from payment_gateway.main import create_app
from pydantic import SecretStr

from .conftest import MERCHANT_ONE, MERCHANT_TWO, gateway_settings, payment_body

BIN = Path(sys.executable).parent
SECRET = "Sup3rS3cretFragment"
PRODUCTION_HASH_KEY = "h" * 32


def production_settings(database_url: str, data_dir: Path) -> Settings:
    return gateway_settings(
        database_url,
        data_dir,
        app_env="production",
        idempotency_hash_key=SecretStr(PRODUCTION_HASH_KEY),
        bank_api_key=SecretStr("b" * 32),
        bank_url="https://bank.example.net",
        public_url="https://pay.example.com",
    )


async def test_demo_keys_left_by_a_development_run_do_not_work_in_production(
    fresh_mysql_url: str, tmp_path: Path
) -> None:
    # The same secrets in both runs: a database refuses a process holding others (key checks).
    same_secrets = gateway_settings(
        fresh_mysql_url, tmp_path, idempotency_hash_key=SecretStr(PRODUCTION_HASH_KEY)
    )
    development = create_app(same_secrets, bank=FakeBank())
    async with LifespanManager(development, startup_timeout=30) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            seeded = await client.post(
                "/api/v1/payments", json=payment_body(), headers=MERCHANT_ONE
            )
            assert seeded.status_code == 201

    production = create_app(
        production_settings(fresh_mysql_url, tmp_path), bank=FakeBank(), run_reconciler=False
    )
    async with LifespanManager(production, startup_timeout=30) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            for demo in (MERCHANT_ONE, MERCHANT_TWO):
                refused = await client.post("/api/v1/payments", json=payment_body(), headers=demo)
                assert refused.status_code == 401
                read = await client.get(f"/api/v1/payments/{seeded.json()['id']}", headers=demo)
                assert read.status_code == 401
            keys = await production.state.services.merchants.list_keys()
    # Revoked, not deleted: the merchants and their payments stay on record.
    assert {key.merchant_name for key in keys} == {"merchant_one", "merchant_two"}
    assert all(key.revoked_at is not None for key in keys)


async def test_production_takes_only_https_shop_urls(fresh_mysql_url: str, tmp_path: Path) -> None:
    """The hosted page's success and cancel URLs, and 3-D Secure's return_url: http is
    refused naming the field when APP_ENV=production (development allows it)."""
    production = create_app(
        production_settings(fresh_mysql_url, tmp_path), bank=FakeBank(), run_reconciler=False
    )
    async with LifespanManager(production, startup_timeout=30) as manager:
        created = await production.state.services.merchants.create("shop")
        key = {"Authorization": f"Bearer {created.api_key}"}
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            session = {"amount": 1999, "currency": "EUR", "reference": "order-1"}
            https = {
                "success_url": "https://shop.example/ok",
                "cancel_url": "https://shop.example/no",
            }
            for field in https:
                urls = {**https, field: "http://shop.example/plain"}
                refused = await client.post(
                    "/api/v1/checkout-sessions", json={**session, **urls}, headers=key
                )
                assert refused.status_code == 422, refused.text
                assert named_fields(refused) == [field]
            three_d_secure = {"return_url": "http://shop.example/back"}
            refused = await client.post(
                "/api/v1/payments",
                json=payment_body(three_d_secure=three_d_secure),
                headers=key,
            )
            assert refused.status_code == 422, refused.text
            assert named_fields(refused) == ["three_d_secure.return_url"]
            listed = await client.get("/api/v1/payments", headers=key)
            assert listed.json()["data"] == []
            # The same requests with https are taken.
            taken = await client.post(
                "/api/v1/checkout-sessions", json={**session, **https}, headers=key
            )
            assert taken.status_code == 201, taken.text
            challenged = await client.post(
                "/api/v1/payments",
                json=payment_body(three_d_secure={"return_url": "https://shop.example/back"}),
                headers=key,
            )
            assert challenged.status_code == 201, challenged.text


def named_fields(problem: httpx.Response) -> list[str]:
    """The fields a 422 problem names."""
    return [error["field"] for error in problem.json()["errors"]]


def start_gateway(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``uvicorn payment_gateway.main:app`` as an operator runs it; it must exit by itself."""
    return subprocess.run(
        [str(BIN / "uvicorn"), "payment_gateway.main:app", "--port", "0"],
        cwd=tmp_path,
        env={**os.environ, "DATA_DIR": str(tmp_path / "var"), "APP_ENV": "production", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


GOOD_PRODUCTION_ENV = {
    "CARD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
    "IDEMPOTENCY_HASH_KEY": "h" * 32,
    "BANK_API_KEY": "b" * 32,
    "DATABASE_URL": "mysql+asyncmy://gateway:pw@127.0.0.1:3306/gateway",
    "BANK_URL": "https://bank.example.net",
}


@pytest.mark.parametrize(
    ("variables", "override"),
    [
        (
            [
                "IDEMPOTENCY_HASH_KEY",
                "BANK_API_KEY",
                "CARD_ENCRYPTION_KEYS",
                "DATABASE_URL",
                "BANK_URL",
            ],
            {
                "IDEMPOTENCY_HASH_KEY": SECRET,
                "BANK_API_KEY": SECRET,
                "CARD_ENCRYPTION_KEYS": f"{SECRET}-not-a-fernet-key",
                "DATABASE_URL": f"sqlite+aiosqlite:///{SECRET}/gateway.db",
                "BANK_URL": f"http://gateway:{SECRET}@bank.internal",
            },
        ),
        (["DATABASE_URL"], {"DATABASE_URL": f"mysql+asyncmy://u:{SECRET}@db:port/x"}),
    ],
    ids=["every-refusal", "unparseable-url"],
)
def test_a_refused_production_start_prints_no_secret(
    tmp_path: Path, variables: list[str], override: dict[str, str]
) -> None:
    result = start_gateway(tmp_path, GOOD_PRODUCTION_ENV | override)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    for variable in variables:
        assert variable in output
    # Not the value, nor a piece of it (pydantic's error used to quote the input's tail).
    for start in range(len(SECRET) - 5):
        assert SECRET[start : start + 6] not in output


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """The usual 022 umask, under which a plain open() makes files world-readable."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.mark.usefixtures("permissive_umask")
async def test_development_keys_and_the_sqlite_file_are_private(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    settings = Settings(data_dir=data_dir, app_env="development")
    app = create_app(settings, bank=FakeBank(), run_reconciler=False)
    async with LifespanManager(app, startup_timeout=30) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            created = await client.post(
                "/api/v1/payments", json=payment_body(), headers=MERCHANT_ONE
            )
            assert created.status_code == 201
        # Inside the lifespan, while SQLite still has its write-ahead log open.
        modes = {path.name: mode(path) for path in data_dir.iterdir()}
    assert {"card-encryption.key", "idempotency-hash.key", "gateway.db"} <= modes.keys()
    assert modes == dict.fromkeys(modes, 0o600)
    assert mode(data_dir) == 0o700
