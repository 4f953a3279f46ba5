"""Apply Alembic migrations under a database-wide lock, so replicas starting together are safe."""

from __future__ import annotations

import asyncio
import fcntl
import os
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_MYSQL_LOCK = "payment_gateway_migrations"


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration; with ``connection``, its commands run on that connection
    (migrations/env.py takes it) rather than on one of their own."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _upgrade(connection: Connection) -> None:
    command.upgrade(alembic_config(connection), "head")


class AutoMigrateRefused(RuntimeError):
    """AUTO_MIGRATE found migrations to apply on a Galera cluster, where it is not safe."""


async def migrate(engine: AsyncEngine, *, at_start: bool = False) -> None:
    """Bring the schema to the newest migration.

    ``at_start`` is AUTO_MIGRATE, run by every replica as it starts; without it this is the
    one-shot ``python -m payment_gateway migrate`` (the compose service, the Kubernetes Job).
    """
    if engine.dialect.name == "sqlite":
        await _migrate_sqlite(engine)
        return
    async with engine.connect() as connection:
        if at_start:
            await _refuse_on_galera(connection)
        got = await connection.scalar(text("SELECT GET_LOCK(:name, 300)"), {"name": _MYSQL_LOCK})
        if got != 1:
            raise RuntimeError("timed out waiting for another process's migrations")
        try:
            await connection.run_sync(_upgrade)
            await connection.commit()
        finally:
            await connection.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": _MYSQL_LOCK})


async def _refuse_on_galera(connection: AsyncConnection) -> None:
    """On a Galera cluster, let AUTO_MIGRATE through only when there is nothing to migrate.

    GET_LOCK is local to the node that grants it (Galera replicates rows, not locks), so two
    replicas starting together on two nodes would both hold "the" lock and both migrate, and
    DDL, replicated in total order outside any transaction, is no place for certification to
    catch the second one. Rather than a home-made cluster-wide lock (a lease row with
    expiry, for a holder that dies mid-migration), a cluster is migrated the way the
    compose file and the Kubernetes manifests already do it everywhere: one
    ``python -m payment_gateway migrate`` before the replicas start (docs/design.md,
    Operations, Migrations). A schema already at head needs no lock: replicas start.
    """
    wsrep = (await connection.execute(text("SHOW GLOBAL VARIABLES LIKE 'wsrep_on'"))).first()
    await connection.rollback()  # end the statement's implicit transaction before Alembic's
    if wsrep is None or str(wsrep[1]).upper() != "ON":
        return  # MySQL, or MariaDB outside a cluster: GET_LOCK serialises every replica
    pending = await connection.run_sync(_pending_migrations)
    await connection.rollback()
    if pending:
        raise AutoMigrateRefused(
            f"AUTO_MIGRATE refused: this database is a Galera cluster node and {pending} "
            "migration(s) are pending. GET_LOCK is local to one Galera node, so replicas "
            "starting together on different nodes could migrate at once. Run "
            "`python -m payment_gateway migrate` once (the Kubernetes migration Job, the "
            "compose `migrate` service), then start the replicas with AUTO_MIGRATE=false."
        )


def _pending_migrations(connection: Connection) -> int:
    """How many migrations the database lacks (all of them for an empty one)."""
    script = ScriptDirectory.from_config(alembic_config())
    current = MigrationContext.configure(connection).get_current_revision()
    return sum(1 for _ in script.iterate_revisions(script.get_current_head(), current or "base"))


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
