"""Key checks: a process refuses a database whose data was written under other secrets.

Two replicas with different secrets would answer wrongly: one writes cards the other cannot
decrypt, or fingerprints the other does not reproduce (a retry answered 422 "different
content" by one replica and 201 by the other). So the first process to start stores, per
secret, a value only that secret reproduces — never the secret itself — and every later one
compares:

- CARD_ENCRYPTION_KEYS: a Fernet token of a fixed text. Any configured key that opens it will
  do, so adding a new key first (rotation) keeps working; `rotate-card-keys` re-encrypts it
  with the cards, after which a process without the new key is refused.
- IDEMPOTENCY_HASH_KEY: an HMAC of a fixed text under the key.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import insert, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from payment_gateway.storage.database import rolled_back_by_contention
from payment_gateway.storage.tables import key_checks
from payment_gateway.storage.vault import CardVault, VaultKeyError

_CHECKED_TEXT = "payment-gateway key check"
CARD_KEYS = "card_encryption_keys"
HASH_KEY = "idempotency_hash_key"


class KeyMismatch(RuntimeError):
    """The configured secret is not the one this database's data was written under."""


async def verify_key_checks(engine: AsyncEngine, vault: CardVault, hash_key: bytes) -> None:
    """Store the checks on first start; raise KeyMismatch when a secret differs."""
    digest = hmac.new(hash_key, _CHECKED_TEXT.encode(), hashlib.sha256).digest()
    async with engine.connect() as connection:
        stored = await _stored_or_new(connection, CARD_KEYS, lambda: vault.encrypt(_CHECKED_TEXT))
        try:
            vault.decrypt(stored)
        except VaultKeyError:
            raise KeyMismatch(
                "CARD_ENCRYPTION_KEYS holds none of the keys this database's cards were "
                "encrypted with: give every replica the same keys (a new key goes first, "
                "the old ones stay until `rotate-card-keys` has run)"
            ) from None
        stored = await _stored_or_new(connection, HASH_KEY, lambda: digest)
        if not hmac.compare_digest(stored, digest):
            raise KeyMismatch(
                "IDEMPOTENCY_HASH_KEY differs from the key this database's idempotency "
                "fingerprints were made with: give every replica the same key"
            )


async def rotate_card_key_check(connection: AsyncConnection, vault: CardVault) -> None:
    """Re-encrypt the card key check under the newest key (with the cards, on rotation)."""
    stored = await connection.scalar(
        select(key_checks.c.check_value).where(key_checks.c.name == CARD_KEYS)
    )
    if stored is not None:
        await connection.execute(
            update(key_checks)
            .where(key_checks.c.name == CARD_KEYS)
            .values(check_value=vault.rotate(stored))
        )


async def _stored_or_new(
    connection: AsyncConnection, name: str, make: Callable[[], bytes]
) -> bytes:
    query = select(key_checks.c.check_value).where(key_checks.c.name == name)
    for _ in range(_ATTEMPTS):
        stored: bytes | None = await connection.scalar(query)
        if stored is None:
            try:
                await connection.execute(
                    insert(key_checks),
                    {"name": name, "check_value": make(), "created_at": datetime.now(UTC)},
                )
                await connection.commit()
            except IntegrityError:  # another process stored it first: compare with theirs
                await connection.rollback()
            except DBAPIError as exc:
                # On a Galera cluster a process on another node may have stored it at the
                # same moment: its row won certification, and this node may not have applied
                # it yet. Look again until it is there.
                if not rolled_back_by_contention(exc):
                    raise
                await connection.rollback()
                await asyncio.sleep(0.05)
                continue
            stored = await connection.scalar(query)
        await connection.commit()
        if stored is not None:
            return bytes(stored)
        await asyncio.sleep(0.05)
    raise RuntimeError(f"the {name} key check could neither be stored nor read")


_ATTEMPTS = 20
