"""Replicas that disagree on a secret refuse to start, instead of answering wrongly."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet

from .conftest import bank_env, free_port, gateway_env, start_service

pytestmark = [pytest.mark.e2e, pytest.mark.mariadb]

MERCHANT = {"Authorization": "Bearer first_merchant_mock_token", "Idempotency-Key": "same-key"}
BODY = {
    "card": {"number": "4242424242424242", "expiry_month": 12, "expiry_year": 2042, "cvv": "123"},
    "amount": 500,
    "currency": "EUR",
}


def test_a_replica_with_other_secrets_refuses_the_database(
    tmp_path: Path, fresh_mysql_url: str
) -> None:
    bank = start_service("bank", "bank_simulator.main:app", free_port(), tmp_path, bank_env())
    first_env = gateway_env(tmp_path / "a", bank.url, DATABASE_URL=fresh_mysql_url)
    first = start_service("gateway-a", "payment_gateway.main:app", free_port(), tmp_path, first_env)
    try:
        paid = httpx.post(f"{first.url}/api/v1/payments", json=BODY, headers=MERCHANT)
        assert paid.status_code == 201

        # Its own DATA_DIR: development keys of its own, unlike the first replica's.
        other_dir = gateway_env(tmp_path / "b", bank.url, DATABASE_URL=fresh_mysql_url)
        with pytest.raises(RuntimeError, match="CARD_ENCRYPTION_KEYS holds none") as refused:
            start_service("gateway-b", "payment_gateway.main:app", free_port(), tmp_path, other_dir)
        assert "Fernet" not in str(refused.value)

        # The same card keys (first replica's data dir) but another hash key.
        secret = "a-hash-key-that-must-never-be-printed-0123456789"
        other_hash = {**first_env, "IDEMPOTENCY_HASH_KEY": secret}
        with pytest.raises(RuntimeError, match="IDEMPOTENCY_HASH_KEY differs") as refused:
            start_service(
                "gateway-c", "payment_gateway.main:app", free_port(), tmp_path, other_hash
            )
        assert secret[:8] not in str(refused.value)

        # A new card key added first (rotation) is the same secret as far as the data goes.
        data_dir = Path(first_env["DATA_DIR"])
        old_key = (data_dir / "card-encryption.key").read_text().strip()
        hash_key = (data_dir / "idempotency-hash.key").read_text().strip()
        rotating = {
            **gateway_env(tmp_path / "d", bank.url, DATABASE_URL=fresh_mysql_url),
            "CARD_ENCRYPTION_KEYS": f"{Fernet.generate_key().decode()},{old_key}",
            "IDEMPOTENCY_HASH_KEY": hash_key,
        }
        second = start_service(
            "gateway-d", "payment_gateway.main:app", free_port(), tmp_path, rotating
        )
        try:
            replay = httpx.post(f"{second.url}/api/v1/payments", json=BODY, headers=MERCHANT)
            assert replay.status_code == 201
            assert replay.headers["Idempotent-Replayed"] == "true"
            assert replay.json()["id"] == paid.json()["id"]
        finally:
            second.stop()
    finally:
        first.stop()
        bank.stop()
