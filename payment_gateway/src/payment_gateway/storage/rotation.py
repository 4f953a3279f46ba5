"""Re-encrypt every stored card, and every webhook signing secret, under the newest key, in
batches, resumably.

Each batch is its own transaction and rows are visited in primary-key order, so an
interrupted run simply starts again: already rotated rows rotate again harmlessly
(a Fernet token re-encrypted under the same newest key is still valid). The card key check
(storage/key_checks.py) is re-encrypted last, so that from then on a process without the
newest key is refused.
"""

from __future__ import annotations

import logging

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from payment_gateway.storage.key_checks import rotate_card_key_check
from payment_gateway.storage.tables import cards, webhook_endpoints
from payment_gateway.storage.vault import CardVault

log = logging.getLogger(__name__)


async def rotate_card_keys(engine: AsyncEngine, vault: CardVault, *, batch_size: int = 500) -> int:
    """Re-encrypt all cards under the newest key; returns how many."""
    await _rotate_webhook_secrets(engine, vault, batch_size)
    rotated = 0
    last_id = ""
    while True:
        async with engine.begin() as connection:
            rows = (
                await connection.execute(
                    select(cards.c.id, cards.c.pan_encrypted, cards.c.holder_name_encrypted)
                    # Erased cards (retention) have nothing left to re-encrypt.
                    .where(cards.c.id > last_id, cards.c.erased_at.is_(None))
                    .order_by(cards.c.id)
                    .limit(batch_size)
                )
            ).all()
            for row in rows:
                holder = row.holder_name_encrypted
                await connection.execute(
                    update(cards)
                    .where(cards.c.id == row.id)
                    .values(
                        pan_encrypted=vault.rotate(row.pan_encrypted),
                        holder_name_encrypted=vault.rotate(holder) if holder else None,
                    )
                )
            if not rows:
                await rotate_card_key_check(connection, vault)
                return rotated
        rotated += len(rows)
        last_id = rows[-1].id
        log.info("re-encrypted %d cards so far (last id %s)", rotated, last_id)


async def _rotate_webhook_secrets(engine: AsyncEngine, vault: CardVault, batch_size: int) -> None:
    """The endpoints' signing secrets are under the same keys: rotate them too."""
    endpoints = webhook_endpoints
    rotated, last_id = 0, ""
    while True:
        async with engine.begin() as connection:
            rows = (
                await connection.execute(
                    select(
                        endpoints.c.id,
                        endpoints.c.secret_encrypted,
                        endpoints.c.previous_secret_encrypted,
                    )
                    .where(endpoints.c.id > last_id)
                    .order_by(endpoints.c.id)
                    .limit(batch_size)
                )
            ).all()
            for row in rows:
                previous = row.previous_secret_encrypted
                await connection.execute(
                    update(endpoints)
                    .where(endpoints.c.id == row.id)
                    .values(
                        secret_encrypted=vault.rotate(row.secret_encrypted),
                        previous_secret_encrypted=vault.rotate(previous) if previous else None,
                    )
                )
        if not rows:
            log.info("re-encrypted %d webhook endpoint secrets", rotated)
            return
        rotated += len(rows)
        last_id = rows[-1].id
