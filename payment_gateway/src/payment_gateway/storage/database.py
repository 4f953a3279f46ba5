"""Engine creation for the embedded SQLite default and for MySQL/MariaDB."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

# Modes of the files that hold card data or the keys to it: this user only.
PRIVATE_DIRECTORY = 0o700
PRIVATE_FILE = 0o600

# Execution option marking a transaction that only reads (SQLite then skips the write lock).
READ_ONLY = "gateway_read_only"


# - stmt_cache_size: asyncmy runs statements as cached server-side prepared statements
#   (binary protocol: no escaping on the way out, no text parsing on the way back).
# - innodb_lock_wait_timeout: a transaction stuck behind a lock gives up after 5 s (and is
#   retried as StorageUnavailable) instead of 50 s; a group commit's requests all wait on it.
MYSQL_CONNECT_ARGS = {
    "stmt_cache_size": 64,
    "init_command": "SET SESSION innodb_lock_wait_timeout = 5",
}


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def create_engine(url: str, *, pool_size: int = 20) -> AsyncEngine:
    if is_sqlite(url):
        return _sqlite_engine(url)
    return create_async_engine(
        url,
        # DATABASE_POOL_SIZE is the whole process's budget: half here, half for the
        # autocommit pool (see autocommit_engine), no overflow beyond it.
        pool_size=max(1, pool_size // 2),
        max_overflow=0,
        pool_pre_ping=False,  # a dead connection surfaces as an error we already handle
        pool_recycle=1800,
        # Every transaction ends in an explicit COMMIT or ROLLBACK, so the pool need not
        # send another ROLLBACK on each return: one round trip saved per checkout.
        pool_reset_on_return=None,
        connect_args=MYSQL_CONNECT_ARGS,
    )


def autocommit_engine(engine: AsyncEngine) -> AsyncEngine:
    """An engine whose connections commit each statement as it runs, for one-statement work.

    On MySQL/MariaDB it has a pool of its own, so autocommit is set once per connection rather
    than switched on and off (two more round trips) at every checkout.
    """
    if engine.dialect.name == "sqlite":
        return engine.execution_options(isolation_level="AUTOCOMMIT")
    size = engine.pool.size() if hasattr(engine.pool, "size") else 5
    return create_async_engine(
        engine.url,
        isolation_level="AUTOCOMMIT",
        # The server already committed each statement: no ROLLBACK when a connection closes.
        skip_autocommit_rollback=True,
        pool_size=size,
        max_overflow=0,
        pool_recycle=1800,
        pool_reset_on_return=None,
        connect_args=MYSQL_CONNECT_ARGS,
    )


def _create_private_file(path: Path) -> None:
    """Create the database file readable by this user only (SQLite would use the umask).

    SQLite gives its -wal and -shm files the mode of the database file, so they follow.
    """
    path.parent.mkdir(mode=PRIVATE_DIRECTORY, parents=True, exist_ok=True)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, PRIVATE_FILE))


def _sqlite_engine(url: str) -> AsyncEngine:
    database = make_url(url).database
    if database and database != ":memory:":
        _create_private_file(Path(database))
    engine = create_async_engine(
        url,
        # A file database gains nothing from pooling across threads; NullPool keeps each
        # request's connection short-lived and lets several processes share the file.
        poolclass=NullPool,
        connect_args={"timeout": 30},
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        # WAL lets readers and one writer work at once; busy_timeout makes writers wait for
        # each other instead of failing with "database is locked".
        # Hand transaction control to SQLAlchemy (see the "begin" hook below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin_immediate(conn: Any) -> None:
        # Writers take the write lock at BEGIN: a deferred transaction that later upgrades
        # to a writer can fail with SQLITE_BUSY without honouring busy_timeout.
        options = conn.get_execution_options()
        if options.get("isolation_level") == "AUTOCOMMIT":
            return  # each statement is its own transaction
        conn.exec_driver_sql("BEGIN" if options.get(READ_ONLY, False) else "BEGIN IMMEDIATE")

    return engine
