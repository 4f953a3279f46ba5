"""Settings come from the environment and are validated."""

from __future__ import annotations

import logging

import pytest
from bank_simulator.config import Settings
from pydantic import ValidationError

VARIABLES = [
    "PENDING_SETTLE_SECONDS",
    "LATENCY_MS",
    "FAILURE_RATE",
    "MAX_TRANSACTIONS",
    "LOG_LEVEL",
    "MAX_BODY_BYTES",
    "PUBLIC_URL",
    "PORT",
]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_defaults() -> None:
    settings = Settings()
    assert settings.pending_settle_seconds == 5
    assert settings.latency_ms == 0
    assert settings.failure_rate == 0.0
    assert settings.max_transactions == 1_000_000
    assert settings.log_level_number == logging.INFO


def test_read_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PENDING_SETTLE_SECONDS", "0.5")
    monkeypatch.setenv("LATENCY_MS", "150")
    monkeypatch.setenv("FAILURE_RATE", "0.25")
    monkeypatch.setenv("MAX_TRANSACTIONS", "10")
    monkeypatch.setenv("LOG_LEVEL", "warning")
    settings = Settings()
    assert (settings.pending_settle_seconds, settings.latency_ms, settings.failure_rate) == (
        0.5,
        150,
        0.25,
    )
    assert settings.max_transactions == 10
    assert settings.log_level_number == logging.WARNING


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("FAILURE_RATE", "1.5"),
        ("FAILURE_RATE", "-0.1"),
        ("FAILURE_RATE", "often"),
        ("LATENCY_MS", "-1"),
        ("MAX_TRANSACTIONS", "0"),
        ("PENDING_SETTLE_SECONDS", "-1"),
        ("LOG_LEVEL", "LOUD"),
        ("PUBLIC_URL", "bank.example"),
        ("PUBLIC_URL", "ftp://bank.example"),
        ("PUBLIC_URL", "https://bank.example/?x=1"),
    ],
)
def test_invalid_values_are_refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=name.lower()):
        Settings()


def test_public_url_defaults_to_where_the_simulator_listens(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings().public_url == "http://127.0.0.1:8081"
    monkeypatch.setenv("PORT", "9123")
    assert Settings().public_url == "http://127.0.0.1:9123"
    monkeypatch.setenv("PUBLIC_URL", "https://bank.example/acs/")
    assert Settings().public_url == "https://bank.example/acs"
