"""Merchant authentication and key management."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from datetime import datetime

import structlog

from payment_gateway import audit
from payment_gateway.audit import FailedAuthenticationLog
from payment_gateway.domain.merchant import ApiKeyInfo, Merchant
from payment_gateway.service.clock import Clock, utc_now
from payment_gateway.service.errors import GatewayError, Unauthorized
from payment_gateway.service.ids import new_id
from payment_gateway.service.ports import DuplicateMerchant, UnitOfWork, UnitOfWorkFactory

log = structlog.get_logger(__name__)

KEY_PREFIX_LENGTH = 12
DEMO_MERCHANTS = {
    "merchant_one": "first_merchant_mock_token",
    "merchant_two": "second_merchant_mock_token",
}


def hash_api_key(api_key: str) -> str:
    # Keys are long random strings, so a fast hash is enough: there is nothing to brute-force.
    return hashlib.sha256(api_key.encode()).hexdigest()


def new_api_key() -> str:
    return f"pgw_{secrets.token_urlsafe(32)}"


def key_prefix(api_key: str) -> str:
    return api_key[:KEY_PREFIX_LENGTH]


class MerchantExists(GatewayError):
    status_code = 409
    title = "Conflict"
    type_slug = "merchant-exists"


@dataclass(frozen=True, slots=True)
class NewApiKey:
    merchant: Merchant
    api_key: str  # shown once, never stored


class MerchantService:
    def __init__(
        self, uow: UnitOfWorkFactory, *, cache_seconds: float = 5.0, clock: Clock = utc_now
    ) -> None:
        self._uow = uow
        self._cache_seconds = cache_seconds
        self._cache: dict[str, tuple[Merchant, float]] = {}
        self._clock = clock
        self._failed_authentications = FailedAuthenticationLog()

    async def authenticate(self, api_key: str | None) -> Merchant:
        if not api_key:
            self._failed_authentications.record("missing bearer API key")
            raise Unauthorized("missing bearer API key")
        key_hash = hash_api_key(api_key)
        cached = self._cache.get(key_hash)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        async with self._uow(read_only=True, single_statement=True) as uow:
            merchant = await uow.merchants.by_key_hash(key_hash)
        if merchant is None:
            self._failed_authentications.record("unknown or revoked API key")
            raise Unauthorized("unknown or revoked API key")
        # A revoked key keeps working for at most cache_seconds on a replica that cached it.
        if self._cache_seconds > 0:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[key_hash] = (merchant, time.monotonic() + self._cache_seconds)
        return merchant

    async def create(self, name: str) -> NewApiKey:
        now = self._clock()
        async with self._uow() as uow:
            merchant = Merchant(new_id(), name)
            try:
                await uow.merchants.add(merchant, now)
            except DuplicateMerchant:
                raise MerchantExists(f"merchant {name!r} already exists") from None
            api_key = new_api_key()
            await _register_key(uow, merchant, api_key, now)
            await uow.commit()
        _audit_key_created(merchant, api_key)
        return NewApiKey(merchant, api_key)

    async def by_name(self, name: str) -> Merchant:
        async with self._uow(read_only=True, single_statement=True) as uow:
            merchant = await uow.merchants.by_name(name)
        if merchant is None:
            raise GatewayError(f"no merchant {name!r}")
        return merchant

    async def add_key(self, name: str) -> NewApiKey:
        now = self._clock()
        async with self._uow() as uow:
            merchant = await uow.merchants.by_name(name)
            if merchant is None:
                raise GatewayError(f"no merchant {name!r}")
            api_key = new_api_key()
            await _register_key(uow, merchant, api_key, now)
            await uow.commit()
        _audit_key_created(merchant, api_key)
        return NewApiKey(merchant, api_key)

    async def list_keys(self) -> list[ApiKeyInfo]:
        async with self._uow(read_only=True) as uow:
            return await uow.merchants.list_keys()

    async def revoke(self, prefix: str) -> int:
        async with self._uow() as uow:
            count = await uow.merchants.revoke_key(prefix, self._clock())
            await uow.commit()
        audit.record("api_key_revoked", key_prefix=prefix, keys=count)
        return count

    async def seed_demo_merchants(self) -> None:
        """Create the demo merchants if missing; safe when several workers start together."""
        now = self._clock()
        for name, api_key in DEMO_MERCHANTS.items():
            async with self._uow() as uow:
                if await uow.merchants.by_name(name) is not None:
                    continue
                merchant = Merchant(new_id(), name)
                try:
                    await uow.merchants.add(merchant, now)
                    await _register_key(uow, merchant, api_key, now)
                    await uow.commit()
                except DuplicateMerchant:
                    pass  # another worker seeded it first

    async def revoke_demo_keys(self) -> int:
        """Revoke the demo merchants' keys, which a development run may have left active.

        The keys are published in the README, so they are never a real credential: revoking
        them (rather than refusing to start) cannot lock a merchant out, is safe when replicas
        start together, and keeps the merchants' rows and payments for the record.
        """
        now = self._clock()
        async with self._uow() as uow:
            revoked = 0
            for api_key in DEMO_MERCHANTS.values():
                # Issued keys start with "pgw_": a demo key's prefix matches only itself.
                revoked += await uow.merchants.revoke_key(key_prefix(api_key), now)
            await uow.commit()
        if revoked:
            log.warning("demo_merchant_keys_revoked", count=revoked)
        return revoked


async def _register_key(uow: UnitOfWork, merchant: Merchant, api_key: str, now: datetime) -> None:
    """Store a key as what may be kept of it: its hash, and its prefix for display."""
    await uow.merchants.add_key(merchant.id, hash_api_key(api_key), key_prefix(api_key), now)


def _audit_key_created(merchant: Merchant, api_key: str) -> None:
    audit.record(
        "api_key_created",
        merchant_id=merchant.id,
        merchant_name=merchant.name,
        key_prefix=key_prefix(api_key),
    )
