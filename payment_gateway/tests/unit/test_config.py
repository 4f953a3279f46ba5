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
    "IDEMPOTENCY_HASH_KEY": "a-long-random-hash-key-of-32-bytes-or-more",
    "BANK_API_KEY": "a-long-random-bank-key-of-32-bytes-or-more",
    "DATABASE_URL": "mysql+asyncmy://user:pass@db:3306/gateway",
    "BANK_URL": "https://bank.example.net",
    "PUBLIC_URL": "https://pay.example.com",
}
REQUIRED_IN_PRODUCTION = [
    "CARD_ENCRYPTION_KEYS",
    "IDEMPOTENCY_HASH_KEY",
    "BANK_API_KEY",
    "DATABASE_URL",
]
REPO_ROOT = Path(__file__).parents[3]


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


@pytest.mark.parametrize("missing", REQUIRED_IN_PRODUCTION)
def test_production_requires_each_secret(monkeypatch: pytest.MonkeyPatch, missing: str) -> None:
    set_env(monkeypatch, {k: v for k, v in PRODUCTION.items() if k != missing})
    with pytest.raises(ValidationError, match=missing):
        Settings()


@pytest.mark.parametrize("missing", REQUIRED_IN_PRODUCTION)
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
    assert settings.idempotency_key_bytes == PRODUCTION["IDEMPOTENCY_HASH_KEY"].encode()
    assert settings.effective_log_format == "json"
    assert list(tmp_path.iterdir()) == []  # no development secret was generated


def example_values() -> dict[str, str]:
    """The secrets .env.example publishes (anyone with the repository has them)."""
    values = {}
    for line in (REPO_ROOT / ".env.example").read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep and not name.startswith("#"):
            values[name.strip()] = value.strip()
    return values


@pytest.mark.parametrize("name", ["CARD_ENCRYPTION_KEYS", "IDEMPOTENCY_HASH_KEY", "BANK_API_KEY"])
def test_production_refuses_the_published_example_secrets(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    example = example_values()[name]
    set_env(monkeypatch, PRODUCTION | {name: example})
    with pytest.raises(ValidationError, match=name) as caught:
        Settings()
    assert "example" in str(caught.value)
    assert example not in str(caught.value)


def test_the_example_encryption_key_is_refused_anywhere_in_the_list(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    keys = f"{Fernet.generate_key().decode()},{example_values()['CARD_ENCRYPTION_KEYS']}"
    set_env(monkeypatch, PRODUCTION | {"CARD_ENCRYPTION_KEYS": keys})
    with pytest.raises(ValidationError, match="CARD_ENCRYPTION_KEYS"):
        Settings()


@pytest.mark.parametrize("name", ["IDEMPOTENCY_HASH_KEY", "BANK_API_KEY"])
@pytest.mark.parametrize("value", ["x", "31-bytes-of-secret-0123456789ab"])
def test_production_refuses_short_shared_secrets(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    set_env(monkeypatch, PRODUCTION | {name: value})
    with pytest.raises(ValidationError, match=f"{name} must be at least 32 bytes"):
        Settings()


def test_a_32_byte_hash_key_is_enough(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, PRODUCTION | {"IDEMPOTENCY_HASH_KEY": "k" * 32})
    assert Settings().idempotency_key_bytes == b"k" * 32


@pytest.mark.parametrize(
    "url", ["sqlite+aiosqlite:///var/gateway.db", "sqlite:///:memory:", "sqlite+aiosqlite://"]
)
def test_production_refuses_sqlite(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    set_env(monkeypatch, PRODUCTION | {"DATABASE_URL": url})
    with pytest.raises(ValidationError, match="DATABASE_URL must name a MySQL/MariaDB server"):
        Settings()


def test_production_refuses_a_plain_http_bank(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, PRODUCTION | {"BANK_URL": "http://bank.internal:8081"})
    with pytest.raises(ValidationError, match="BANK_URL must be https"):
        Settings()


def test_bank_allow_insecure_permits_a_plain_http_bank(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(
        monkeypatch,
        PRODUCTION | {"BANK_URL": "http://bank.internal:8081", "BANK_ALLOW_INSECURE": "true"},
    )
    settings = Settings()
    assert settings.bank_allow_insecure is True
    assert settings.bank_url == "http://bank.internal:8081"


def test_plain_http_bank_is_fine_in_development() -> None:
    settings = Settings()
    assert settings.bank_url.startswith("http://")
    assert settings.bank_allow_insecure is False


@pytest.mark.parametrize("url", ["ftp://bank", "bank.example.net", "file:///etc/passwd"])
def test_bank_url_must_be_http_or_https(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("BANK_URL", url)
    with pytest.raises(ValidationError, match="BANK_URL"):
        Settings()


SECRET = "Sup3rS3cretFragment"


@pytest.mark.parametrize(
    ("variable", "values"),
    [
        ("IDEMPOTENCY_HASH_KEY", {"IDEMPOTENCY_HASH_KEY": SECRET}),
        ("BANK_API_KEY", {"BANK_API_KEY": SECRET}),
        ("CARD_ENCRYPTION_KEYS", {"CARD_ENCRYPTION_KEYS": f"not-a-fernet-key-{SECRET}"}),
        ("DATABASE_URL", {"DATABASE_URL": f"mysql+asyncmy://u:{SECRET}@db:port/x"}),
        ("BANK_URL", {"BANK_URL": f"http://u:{SECRET}@bank.internal"}),
        ("bank_timeout_seconds", {"BANK_TIMEOUT_SECONDS": SECRET}),
    ],
)
def test_a_refused_start_names_the_variable_and_never_the_value(
    monkeypatch: pytest.MonkeyPatch, variable: str, values: dict[str, str]
) -> None:
    set_env(monkeypatch, PRODUCTION | values)
    with pytest.raises(ValidationError) as caught:
        Settings()
    message = str(caught.value)
    assert variable in message
    # Not the value, nor any piece of it long enough to matter (pydantic used to print its tail).
    for start in range(len(SECRET) - 5):
        assert SECRET[start : start + 6] not in message
    assert "input_value" not in message


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


def test_production_refuses_a_plain_http_public_url(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, PRODUCTION | {"PUBLIC_URL": "http://pay.example.com"})
    with pytest.raises(ValidationError, match="PUBLIC_URL must be https"):
        Settings()


@pytest.mark.parametrize("url", ["pay.example.com", "javascript:alert(1)", "https://x/?a=1"])
def test_public_url_must_be_an_absolute_url(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    set_env(monkeypatch, {"PUBLIC_URL": url})
    with pytest.raises(ValidationError, match="PUBLIC_URL must be an absolute"):
        Settings()


def test_public_url_loses_its_trailing_slash(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, {"PUBLIC_URL": "https://pay.example.com/"})
    assert Settings().public_url == "https://pay.example.com"
