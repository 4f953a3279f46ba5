"""Settings from the environment; production refuses to start without real secrets."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from payment_gateway.config import Settings
from pydantic import ValidationError

PRODUCTION = {
    "APP_ENV": "production",
    "CARD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
    "IDEMPOTENCY_HASH_KEY": "a-long-random-hash-key",
    "DATABASE_URL": "mysql+asyncmy://user:pass@db:3306/gateway",
}
REQUIRED_IN_PRODUCTION = ["CARD_ENCRYPTION_KEYS", "IDEMPOTENCY_HASH_KEY", "DATABASE_URL"]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Only what a test sets is in the environment; secrets go to a temporary data dir."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATA_DIR", str(tmp_path))


def set_env(monkeypatch: pytest.MonkeyPatch, values: dict[str, str]) -> None:
    for name, value in values.items():
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize(
    "missing", ["CARD_ENCRYPTION_KEYS", "IDEMPOTENCY_HASH_KEY", "DATABASE_URL"]
)
def test_production_requires_each_secret(monkeypatch: pytest.MonkeyPatch, missing: str) -> None:
    set_env(monkeypatch, {k: v for k, v in PRODUCTION.items() if k != missing})
    with pytest.raises(ValidationError, match=missing):
        Settings()


@pytest.mark.parametrize(
    "missing", ["CARD_ENCRYPTION_KEYS", "IDEMPOTENCY_HASH_KEY", "DATABASE_URL"]
)
def test_production_rejects_empty_secrets(monkeypatch: pytest.MonkeyPatch, missing: str) -> None:
    set_env(monkeypatch, PRODUCTION | {missing: ""})
    with pytest.raises(ValidationError, match=missing):
        Settings()


def test_production_refuses_demo_merchants(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, PRODUCTION | {"DEMO_MERCHANTS": "true"})
    with pytest.raises(ValidationError, match="DEMO_MERCHANTS"):
        Settings()


def test_production_with_everything_set(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    set_env(monkeypatch, PRODUCTION)
    settings = Settings()
    assert settings.is_production
    assert settings.seed_demo_merchants is False
    assert settings.effective_database_url == PRODUCTION["DATABASE_URL"]
    assert settings.encryption_keys == [PRODUCTION["CARD_ENCRYPTION_KEYS"].encode()]
    assert settings.idempotency_key_bytes == b"a-long-random-hash-key"
    assert settings.effective_log_format == "json"
    assert list(tmp_path.iterdir()) == []  # no development secret was generated


def test_production_with_demo_merchants_false(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, PRODUCTION | {"DEMO_MERCHANTS": "false"})
    assert Settings().seed_demo_merchants is False


def test_secrets_are_not_in_the_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, PRODUCTION)
    text = repr(Settings())
    assert PRODUCTION["CARD_ENCRYPTION_KEYS"] not in text
    assert PRODUCTION["IDEMPOTENCY_HASH_KEY"] not in text


def test_development_defaults(tmp_path: Path) -> None:
    settings = Settings()
    assert settings.app_env == "development"
    assert settings.seed_demo_merchants is True
    assert settings.effective_database_url.startswith("sqlite+aiosqlite:///")
    assert settings.effective_database_url.endswith("/gateway.db")
    assert str(tmp_path.resolve()) in settings.effective_database_url
    assert settings.idempotency_ttl_seconds == 86_400


def test_development_demo_merchants_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMO_MERCHANTS", "false")
    assert Settings().seed_demo_merchants is False


@pytest.mark.parametrize(
    ("timeout", "grace"), [(None, 30.0), ("1", 30.0), ("10", 30.0), ("11", 33.0), ("20", 60.0)]
)
def test_not_found_grace_default(
    monkeypatch: pytest.MonkeyPatch, timeout: str | None, grace: float
) -> None:
    if timeout is not None:
        monkeypatch.setenv("BANK_TIMEOUT_SECONDS", timeout)
    settings = Settings()
    assert settings.not_found_grace_seconds == grace
    assert settings.not_found_grace_seconds == max(30.0, 3 * settings.bank_timeout_seconds)


def test_not_found_grace_explicit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BANK_TIMEOUT_SECONDS", "20")
    monkeypatch.setenv("RECONCILE_NOT_FOUND_GRACE_SECONDS", "5")
    assert Settings().not_found_grace_seconds == 5.0


def test_in_flight_covers_the_bank_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BANK_TIMEOUT_SECONDS", "7")
    assert Settings().in_flight_seconds > 7


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("BANK_TIMEOUT_SECONDS", "0"),
        ("BANK_TIMEOUT_SECONDS", "-1"),
        ("IDEMPOTENCY_TTL_SECONDS", "10"),
        ("APP_ENV", "staging"),
        ("RECONCILE_INTERVAL_SECONDS", "0"),
    ],
)
def test_invalid_values(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()


def test_comma_separated_keys_newest_first(monkeypatch: pytest.MonkeyPatch) -> None:
    new, old = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    monkeypatch.setenv("CARD_ENCRYPTION_KEYS", f" {new} , {old},")
    assert Settings().encryption_keys == [new.encode(), old.encode()]


def test_development_secrets_are_generated_once(tmp_path: Path) -> None:
    first = Settings()
    keys, hash_key = first.encryption_keys, first.idempotency_key_bytes
    Fernet(keys[0])  # a usable Fernet key
    assert len(hash_key) >= 32
    second = Settings()
    assert second.encryption_keys == keys
    assert second.idempotency_key_bytes == hash_key
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "card-encryption.key",
        "idempotency-hash.key",
    ]
