"""Settings, read from the environment only (docs/design.md, Configuration)."""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from cryptography.fernet import Fernet
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from payment_gateway.storage.database import PRIVATE_DIRECTORY, PRIVATE_FILE, is_sqlite

log = logging.getLogger(__name__)

DEFAULT_DATA_DIR = Path("var")
MIN_SECRET_BYTES = 32
# Values published in .env.example and deployments/secret.example.yaml: anyone can read them.
_EXAMPLE_MARKERS = ("example-only", "change-me")
_EXAMPLE_ENCRYPTION_KEYS = frozenset({b"RVhBTVBMRS1PTkxZLWRvLW5vdC11c2UtaW4tcHJvZCE="})


class Settings(BaseSettings):
    # hide_input_in_errors: a rejected value (a key, a URL with its password) must not be
    # echoed into the start-up error, which ends up in logs.
    model_config = SettingsConfigDict(
        env_file=None, extra="ignore", frozen=True, hide_input_in_errors=True
    )

    app_env: Literal["development", "test", "production"] = "development"
    data_dir: Path = DEFAULT_DATA_DIR
    database_url: str = ""
    database_pool_size: int = Field(default=20, ge=1)
    bank_url: str = "http://127.0.0.1:8081"
    # The bank's 3-D Secure challenge pages as shoppers' browsers reach them: where the hosted
    # payment page's form may redirect (its CSP form-action).
    bank_public_url: str = "http://127.0.0.1:8081"
    bank_timeout_seconds: float = Field(default=3.0, gt=0, le=120)
    bank_max_connections: int = Field(default=200, ge=1)
    card_encryption_keys: SecretStr = SecretStr("")
    idempotency_hash_key: SecretStr = SecretStr("")
    idempotency_ttl_seconds: int = Field(default=86_400, ge=60)
    authorization_ttl_seconds: float = Field(default=604_800, gt=0)  # 7 days, as issuers hold
    # The gateway as shoppers' browsers reach it: the bank sends them back here after 3-D Secure,
    # and the hosted payment pages are under it.
    public_url: str = "http://127.0.0.1:8080"
    challenge_ttl_seconds: float = Field(default=900, gt=0)  # a 3-D Secure challenge's deadline
    reconcile_interval_seconds: float = Field(default=2.0, gt=0)
    reconcile_batch_size: int = Field(default=100, ge=1)
    reconcile_not_found_grace_seconds: float | None = Field(default=None, ge=0)
    reconcile_max_backoff_seconds: float = Field(default=300.0, gt=0)
    # Long enough for the reconciler to settle every payment (its backoff tops out at
    # minutes) and for a dispute to be looked into; refunds go by payment id, never the PAN.
    card_data_retention_days: int = Field(default=30, ge=1)
    bank_api_key: SecretStr = SecretStr("")
    bank_allow_insecure: bool = False
    auto_migrate: bool = True
    demo_merchants: bool | None = None
    merchant_cache_seconds: float = Field(default=5.0, ge=0)
    docs_enabled: bool = True  # Swagger UI at /docs and the document at /openapi.json
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=9464, ge=0, le=65535)  # 0: no metrics server
    log_level: str = "INFO"
    log_format: Literal["json", "console"] | None = None
    # Rate limits (api/rate_limit.py): a moving window of BURST / PER_SECOND whole seconds.
    rate_limit_enabled: bool = True
    rate_limit_per_second: int = Field(default=100, ge=1)
    rate_limit_burst: int | None = Field(default=None, ge=1)  # None: twice the rate
    rate_limit_unauthenticated_per_second: int = Field(default=10, ge=1)
    rate_limit_key_prefix: str = Field(default="payment-gateway:rate-limit", min_length=1)
    # A key known to be over its limit gets its 429 after this hold (a tarpit), at most this many
    # held at once per worker (api/refused_keys.py); 0 answers at once.
    rate_limit_hold_seconds: float = Field(default=1.0, ge=0, le=10)
    rate_limit_max_held: int = Field(default=256, ge=0)
    # Two fairness levers against a flooding key (README, Rate limits, gives what the fair-use
    # bench measured): at most this many requests in progress at once per worker for an API
    # key refused lately (until a window after its refusal lifts), the next refused with 429
    # before routing (api/refused_keys.py); a key not refused lately is never capped; 0: no cap.
    rate_limit_max_in_flight: int = Field(default=4, ge=0)
    # Pacing, off by default: a key refused lately gets its slots back one window/quota apart,
    # not in the burst it spent them in (api/refused_keys.py, RefusedKeys).
    rate_limit_pace: bool = False
    redis_url: SecretStr = SecretStr("")  # unset: each process counts alone
    redis_timeout_seconds: float = Field(default=0.5, gt=0, le=10)
    # Webhooks (service/delivery.py). None: allowed outside production only (SSRF).
    webhook_allow_private_urls: bool | None = None
    webhook_delivery_enabled: bool = True  # run this replica's delivery worker
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    # Seconds between attempts after each failure; one attempt more than delays in all.
    webhook_retry_delays: str = "5,300,1800,7200,18000,36000,36000"
    webhook_retry_jitter: float = Field(default=0.1, ge=0, lt=1)
    webhook_poll_interval_seconds: float = Field(default=1.0, gt=0)
    webhook_disable_after_seconds: float = Field(default=5 * 86_400, gt=0)  # all failing
    event_retention_days: int = Field(default=30, ge=1)

    @model_validator(mode="after")
    def _rate_limit_window_is_whole_seconds(self) -> Settings:
        burst = self.effective_rate_limit_burst
        if burst < self.rate_limit_per_second or burst % self.rate_limit_per_second:
            raise ValueError(
                "RATE_LIMIT_BURST must be a whole multiple of RATE_LIMIT_PER_SECOND: the burst "
                "is the budget of a window of BURST / PER_SECOND whole seconds"
            )
        url = self.redis_url.get_secret_value()
        if url and not url.startswith(("redis://", "rediss://")):
            raise ValueError("REDIS_URL must start with redis:// or rediss://")
        return self

    @model_validator(mode="after")
    def _valid_webhook_retry_delays(self) -> Settings:
        try:
            delays = self.webhook_retry_delay_seconds
        except ValueError:
            delays = ()
        if not delays or any(delay <= 0 for delay in delays):
            raise ValueError("WEBHOOK_RETRY_DELAYS must be comma-separated positive seconds")
        return self

    @model_validator(mode="after")
    def _valid_urls(self) -> Settings:
        # Checked here rather than at first use, where the error would quote the URL and any
        # password in it.
        if self.database_url:
            try:
                make_url(self.database_url)
            except (ArgumentError, ValueError):
                raise ValueError("DATABASE_URL is not a database URL") from None
        if urlsplit(self.bank_url).scheme not in ("http", "https"):
            raise ValueError("BANK_URL must be an http or https URL")
        public = urlsplit(self.public_url)
        if public.scheme not in ("http", "https") or not public.hostname or public.query:
            raise ValueError("PUBLIC_URL must be an absolute http or https URL")
        bank_public = urlsplit(self.bank_public_url)
        if bank_public.scheme not in ("http", "https") or not bank_public.hostname:
            raise ValueError("BANK_PUBLIC_URL must be an absolute http or https URL")
        return self

    @field_validator("public_url")
    @classmethod
    def _without_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")  # paths are appended to it

    @model_validator(mode="after")
    def _production_needs_real_secrets(self) -> Settings:
        if self.app_env != "production":
            return self
        problems = self._production_problems()
        if problems:
            raise ValueError("APP_ENV=production refuses to start: " + "; ".join(problems))
        return self

    def _production_problems(self) -> list[str]:
        """What keeps this configuration out of production, each naming its variable.

        The messages never quote a value: a start-up error is printed and logged.
        """
        problems = [
            f"{name} is required"
            for name, value in (
                ("CARD_ENCRYPTION_KEYS", self.card_encryption_keys),
                ("IDEMPOTENCY_HASH_KEY", self.idempotency_hash_key),
                ("BANK_API_KEY", self.bank_api_key),
                ("DATABASE_URL", SecretStr(self.database_url)),
            )
            if not value.get_secret_value()
        ]
        if self.card_encryption_keys.get_secret_value():
            problems += _encryption_key_problems(self._configured_encryption_keys())
        for name, secret in (
            ("IDEMPOTENCY_HASH_KEY", self.idempotency_hash_key),
            ("BANK_API_KEY", self.bank_api_key),
        ):
            value = secret.get_secret_value()
            if value:
                problems += _shared_secret_problems(name, value)
        if self.database_url and is_sqlite(self.database_url):
            problems.append("DATABASE_URL must name a MySQL/MariaDB server, not a SQLite file")
        if urlsplit(self.bank_url).scheme != "https" and not self.bank_allow_insecure:
            problems.append(
                "BANK_URL must be https: card numbers and CVVs would cross the network in "
                "clear (set BANK_ALLOW_INSECURE=true only for a bank on the same private network)"
            )
        if urlsplit(self.public_url).scheme != "https":
            problems.append("PUBLIC_URL must be https: shoppers' browsers come back to it")
        if self.demo_merchants:
            problems.append("DEMO_MERCHANTS=true is refused")
        if self.webhook_allow_private_urls:
            problems.append(
                "WEBHOOK_ALLOW_PRIVATE_URLS=true is refused: a webhook URL could then reach "
                "the gateway's own network"
            )
        return problems

    @property
    def is_production(self) -> bool:
        return self.app_env == "production"

    @property
    def seed_demo_merchants(self) -> bool:
        return (not self.is_production) if self.demo_merchants is None else self.demo_merchants

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir.resolve()}/gateway.db"

    @property
    def not_found_grace_seconds(self) -> float:
        if self.reconcile_not_found_grace_seconds is not None:
            return self.reconcile_not_found_grace_seconds
        return max(30.0, 3 * self.bank_timeout_seconds)

    @property
    def in_flight_seconds(self) -> float:
        """How long a payment in ``init`` may still have a request working on it."""
        return self.bank_timeout_seconds + 5.0

    @property
    def max_send_delay_seconds(self) -> float:
        """Past this age a payment is not sent to the bank any more.

        A request still sending must stay inside the in-flight window (409 to its retries, no
        reconciler inquiry yet), so its bank call must start early enough to end inside it.
        """
        return max(self.in_flight_seconds - self.bank_timeout_seconds - 1, 1)

    @property
    def reconcile_lease_seconds(self) -> float:
        """How long a reconciler's claim keeps other replicas away: longer than an inquiry."""
        return self.bank_timeout_seconds + 1

    @property
    def webhook_private_urls_allowed(self) -> bool:
        if self.webhook_allow_private_urls is None:
            return not self.is_production
        return self.webhook_allow_private_urls

    @property
    def webhook_retry_delay_seconds(self) -> tuple[float, ...]:
        return tuple(float(part) for part in self.webhook_retry_delays.split(",") if part.strip())

    @property
    def webhook_lease_seconds(self) -> float:
        """How long a worker's claim on a delivery lasts: longer than a send may take (its
        timeout) and its recording, so that no other worker sends it meanwhile."""
        return 2 * self.webhook_timeout_seconds + 5.0

    @property
    def effective_rate_limit_burst(self) -> int:
        return self.rate_limit_burst or 2 * self.rate_limit_per_second

    @property
    def rate_limit_window_seconds(self) -> int:
        return self.effective_rate_limit_burst // self.rate_limit_per_second

    @property
    def effective_log_format(self) -> str:
        return self.log_format or ("json" if self.is_production else "console")

    @cached_property
    def encryption_keys(self) -> list[bytes]:
        if self.card_encryption_keys.get_secret_value():
            return self._configured_encryption_keys()
        return [self._dev_secret("card-encryption.key", lambda: Fernet.generate_key().decode())]

    def _configured_encryption_keys(self) -> list[bytes]:
        """CARD_ENCRYPTION_KEYS as a list, newest first; blanks between commas ignored."""
        raw = self.card_encryption_keys.get_secret_value()
        return [key.strip().encode() for key in raw.split(",") if key.strip()]

    @cached_property
    def idempotency_key_bytes(self) -> bytes:
        raw = self.idempotency_hash_key.get_secret_value()
        if raw:
            return raw.encode()
        return self._dev_secret("idempotency-hash.key", lambda: secrets.token_urlsafe(32))

    def _dev_secret(self, filename: str, generate: Callable[[], str]) -> bytes:
        """A development-only secret, generated once into the data directory."""
        path = self.data_dir / filename
        if not path.exists():
            path.parent.mkdir(mode=PRIVATE_DIRECTORY, parents=True, exist_ok=True)
            temporary = path.with_name(f".{filename}.{os.getpid()}")
            # Readable by this user only, from the moment it exists: it decrypts every card.
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
            with os.fdopen(descriptor, "w") as file:
                file.write(generate())
            try:
                # link() is atomic and refuses to overwrite: racing workers agree on one key.
                os.link(temporary, path)
                log.warning("generated a development secret in %s; set it in production", path)
            except FileExistsError:
                pass
            finally:
                temporary.unlink()
        return path.read_text().strip().encode()


def _is_example(value: str) -> bool:
    lowered = value.lower()
    return any(marker in lowered for marker in _EXAMPLE_MARKERS)


def _shared_secret_problems(name: str, value: str) -> list[str]:
    if _is_example(value):
        return [f"{name} holds the published example value"]
    if len(value.encode()) < MIN_SECRET_BYTES:
        return [f"{name} must be at least {MIN_SECRET_BYTES} bytes"]
    return []


def _encryption_key_problems(keys: list[bytes]) -> list[str]:
    if not keys:
        return ["CARD_ENCRYPTION_KEYS holds no key"]
    if any(key in _EXAMPLE_ENCRYPTION_KEYS or _is_example(key.decode()) for key in keys):
        return ["CARD_ENCRYPTION_KEYS holds the published example key"]
    for key in keys:
        try:
            Fernet(key)
        except ValueError:
            return ["CARD_ENCRYPTION_KEYS must be url-safe base64 Fernet keys"]
    return []
