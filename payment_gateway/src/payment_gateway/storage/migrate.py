"""Apply Alembic migrations under a database-wide lock, so replicas starting together are safe."""

from __future__ import annotations

import asyncio
import fcntl
import os
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_MYSQL_LOCK = "payment_gateway_migrations"


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def _upgrade(connection: Connection) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


async def migrate(engine: AsyncEngine) -> None:
    if engine.dialect.name == "sqlite":
        await _migrate_sqlite(engine)
        return
    async with engine.connect() as connection:
        got = await connection.scalar(text("SELECT GET_LOCK(:name, 300)"), {"name": _MYSQL_LOCK})
        if got != 1:
            raise RuntimeError("timed out waiting for another process's migrations")
        try:
            await connection.run_sync(_upgrade)
            await connection.commit()
        finally:
            await connection.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": _MYSQL_LOCK})


async def _migrate_sqlite(engine: AsyncEngine) -> None:
    database = make_url(str(engine.url)).database
    if not database or database == ":memory:":
        async with engine.begin() as connection:
            await connection.run_sync(_upgrade)
        return
    # An advisory file lock stands in for MySQL's GET_LOCK: workers sharing the file wait.
    lock_path = Path(f"{database}.migrate-lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        await asyncio.to_thread(fcntl.flock, lock_fd, fcntl.LOCK_EX)
        async with engine.begin() as connection:
            await connection.run_sync(_upgrade)
    finally:
        os.close(lock_fd)  # closing releases the lock
