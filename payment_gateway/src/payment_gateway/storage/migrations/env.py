"""Alembic environment. The app passes its own connection; the CLI builds one from settings."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from payment_gateway.storage.tables import metadata

config = context.config


def run_with(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_from_settings() -> None:
    from payment_gateway.config import Settings
    from payment_gateway.storage.database import create_engine

    engine = create_engine(Settings().effective_database_url, pool_size=1)
    async with engine.begin() as connection:
        await connection.run_sync(run_with)
    await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported")
shared_connection = config.attributes.get("connection")
if shared_connection is not None:
    run_with(shared_connection)
else:
    asyncio.run(run_from_settings())
