"""Runtime configuration, read from environment variables only."""

from __future__ import annotations

import logging
import os
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bank_simulator.schemas import web_origin

LogLevel = Literal["CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"]


def _default_public_url() -> str:
    """Where ``python -m bank_simulator`` listens by default (its ``PORT``, else 8081)."""
    return f"http://127.0.0.1:{os.environ.get('PORT', '8081')}"


class Settings(BaseSettings):
    """Bank simulator settings.

    Every field is read from the environment variable of the same name (case-insensitive),
    e.g. ``PENDING_SETTLE_SECONDS=2 LATENCY_MS=150 FAILURE_RATE=0.1``.
    """

    model_config = SettingsConfigDict(
        case_sensitive=False, extra="ignore", frozen=True, hide_input_in_errors=True
    )

    pending_settle_seconds: float = Field(
        default=5.0, ge=0, description="Seconds after which a pending deposit reads as succeeded."
    )
    latency_ms: int = Field(
        default=0, ge=0, le=600_000, description="Delay added after a deposit is recorded."
    )
    failure_rate: float = Field(
        default=0.0, ge=0.0, le=1.0, description="Share of deposits answered 503, unrecorded."
    )
    max_transactions: int = Field(
        default=1_000_000, ge=1, description="Transactions kept in memory; oldest dropped."
    )
    max_body_bytes: int = Field(default=64 * 1024, ge=1024, description="Largest deposit body.")
    log_level: LogLevel = "INFO"
    bank_api_key: SecretStr | None = Field(
        default=None,
        description="When set, every /api/v1 request must carry Authorization: Bearer <key>.",
    )

    public_url: str = Field(
        default_factory=_default_public_url,
        description="The simulator as shoppers' browsers reach it: the base of challenge_url.",
    )

    @field_validator("public_url")
    @classmethod
    def _check_public_url(cls, value: str) -> str:
        try:
            web_origin(value)
        except ValueError:
            raise ValueError("must be an absolute http or https URL") from None
        if "?" in value or "#" in value:
            raise ValueError("must have no query or fragment")
        return value.rstrip("/")

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @property
    def log_level_number(self) -> int:
        return logging.getLevelNamesMapping()[self.log_level]
