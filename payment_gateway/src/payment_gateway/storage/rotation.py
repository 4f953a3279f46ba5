"""Re-encrypt every stored card under the newest key, in batches, resumably.

Each batch is its own transaction and rows are visited in primary-key order, so an
interrupted run simply starts again: already rotated rows rotate again harmlessly
(a Fernet token re-encrypted under the same newest key is still valid).
"""

from __future__ import annotations

import logging

from sqlalchemy import select, update

from payment_gateway.config import Settings
from payment_gateway.storage.database import create_engine
from payment_gateway.storage.tables import cards
from payment_gateway.storage.vault import CardVault

log = logging.getLogger(__name__)


async def rotate_card_keys(settings: Settings, *, batch_size: int = 500) -> int:
    vault = CardVault(settings.encryption_keys)
    engine = create_engine(settings.effective_database_url, pool_size=1)
    rotated = 0
    last_id = ""
    try:
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
                break
            rotated += len(rows)
            last_id = rows[-1].id
            log.info("re-encrypted %d cards so far (last id %s)", rotated, last_id)
    finally:
        await engine.dispose()
    print(f"re-encrypted {rotated} card(s) under the newest key")
    return 0
