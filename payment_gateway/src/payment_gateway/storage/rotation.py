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

from sqlalchemy import ColumnElement, Table, select, true, update
from sqlalchemy.ext.asyncio import AsyncEngine

from payment_gateway.storage.key_checks import rotate_card_key_check
from payment_gateway.storage.tables import cards, webhook_endpoints
from payment_gateway.storage.vault import CardVault

log = logging.getLogger(__name__)


async def rotate_card_keys(engine: AsyncEngine, vault: CardVault, *, batch_size: int = 500) -> int:
    """Re-encrypt all cards, then the webhook secrets, under the newest key; how many cards."""
    # Erased cards (retention) have nothing left to re-encrypt.
    rotated = await _rotate_table(
        engine,
        vault,
        cards,
        ("pan_encrypted", "holder_name_encrypted"),
        cards.c.erased_at.is_(None),
        batch_size,
    )
    # The endpoints' signing secrets are under the same keys.
    await _rotate_table(
        engine,
        vault,
        webhook_endpoints,
        ("secret_encrypted", "previous_secret_encrypted"),
        true(),
        batch_size,
    )
    async with engine.begin() as connection:
        await rotate_card_key_check(connection, vault)  # last: see the module's docstring
    return rotated


async def _rotate_table(
    engine: AsyncEngine,
    vault: CardVault,
    table: Table,
    columns: tuple[str, ...],
    condition: ColumnElement[bool],
    batch_size: int,
) -> int:
    """Re-encrypt ``columns`` (NULL stays NULL) of the rows that meet ``condition``, in
    primary-key order, a transaction per batch."""
    rotated, last_id = 0, ""
    while True:
        async with engine.begin() as connection:
            rows = (
                await connection.execute(
                    select(table.c.id, *(table.c[name] for name in columns))
                    .where(table.c.id > last_id, condition)
                    .order_by(table.c.id)
                    .limit(batch_size)
                )
            ).all()
            for row in rows:
                values = {
                    name: vault.rotate(token) if (token := getattr(row, name)) else None
                    for name in columns
                }
                await connection.execute(update(table).where(table.c.id == row.id).values(**values))
        if not rows:
            return rotated
        rotated += len(rows)
        last_id = rows[-1].id
        log.info("re-encrypted %d rows of %s so far (last id %s)", rotated, table.name, last_id)
