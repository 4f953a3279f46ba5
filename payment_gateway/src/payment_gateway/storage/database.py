"""Engine creation for the embedded SQLite default and for MySQL/MariaDB."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
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


# MySQL/MariaDB: lock wait timeout, deadlock. The server rolled the work back: retry is safe.
# On a Galera cluster 1213 is also a certification conflict (a transaction of another node
# wrote the same row first; reported at COMMIT) and a brute-force abort (a replicated write
# needed a row this transaction had locked): the same "rolled back, run it again".
CONTENTION_ERRORS = frozenset({1205, 1213})
# Galera: "WSREP has not yet prepared node for application use". The node is not part of the
# cluster's primary component (it lost quorum, or is still joining): no work was done, and
# the node is as good as unreachable until it is back (readiness fails; requests get 503).
NODE_NOT_READY = 1047


def error_code(exc: DBAPIError) -> object:
    args = getattr(exc.orig, "args", ())
    return args[0] if args else None


def rolled_back_by_contention(exc: DBAPIError) -> bool:
    if error_code(exc) in CONTENTION_ERRORS:
        return True
    # SQLite: another writer held the lock past busy_timeout.
    return "database is locked" in str(exc.orig)


# Galera (docs/design.md, Operations, Galera): each connection to a cluster node
# - sends its statements as text, not as server-side prepared statements: with asyncmy's
#   statement cache (the binary protocol) racing writes across nodes lost updates here
#   (MariaDB 10.11 with galera-4: a statement aborted by a replicated write went missing
#   while the rest of its transaction committed; 50 refunds racing over three nodes reserved
#   five of three). With the text protocol the abort is reported and the work retried;
# - waits, before each read, UPDATE and DELETE, until its node has applied everything the
#   cluster had committed when the statement began (wsrep_sync_wait 1 + 2): a replica then
#   reads what a replica on another node has just written (a payment created there, its
#   status), as on one server.
GALERA_SYNC_WAIT = 3


def _galera_sessions(engine: AsyncEngine) -> AsyncEngine:
    """Adjust each new connection that turns out to be to a Galera node (MySQL: untouched)."""

    @event.listens_for(engine.sync_engine, "connect")
    def _galera_session(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("SHOW VARIABLES LIKE 'wsrep_on'")
            row = cursor.fetchone()
            if row is None or str(row[1]).upper() != "ON":
                return
            cursor.execute(f"SET SESSION wsrep_sync_wait = {GALERA_SYNC_WAIT}")
        finally:
            cursor.close()
        # The driver's own connection under SQLAlchemy's adapter: 0 turns its cache off.
        dbapi_connection._connection._stmt_cache_size = 0

    return engine


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def create_engine(url: str, *, pool_size: int = 20) -> AsyncEngine:
    if is_sqlite(url):
        return _sqlite_engine(url)
    engine = create_async_engine(
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
    return _galera_sessions(engine)


def autocommit_engine(engine: AsyncEngine) -> AsyncEngine:
    """An engine whose connections commit each statement as it runs, for one-statement work.

    On MySQL/MariaDB it has a pool of its own, so autocommit is set once per connection rather
    than switched on and off (two more round trips) at every checkout.
    """
    if engine.dialect.name == "sqlite":
        return engine.execution_options(isolation_level="AUTOCOMMIT")
    size = engine.pool.size() if hasattr(engine.pool, "size") else 5
    autocommit = create_async_engine(
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
    return _galera_sessions(autocommit)


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
