"""Shared fixtures: real databases (SQLite file, MariaDB/MySQL) for the integration suites."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator

import pytest
from mariadb_server import MYSQL_SERVER_URL
from payment_gateway.storage.database import create_engine
from payment_gateway.storage.migrate import migrate
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

IN_CI = os.environ.get("CI", "").lower() == "true"


async def _mysql_admin(statement: str) -> None:
    engine = create_async_engine(MYSQL_SERVER_URL, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            await connection.execute(text(statement))
    finally:
        await engine.dispose()


async def _migrate(url: str) -> None:
    engine = create_engine(url, pool_size=1)
    try:
        await migrate(engine)
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def mysql_url() -> Iterator[str]:
    """A fresh, migrated MariaDB/MySQL database for this test session, dropped afterwards."""
    name = f"pgw_test_{uuid.uuid4().hex[:12]}"
    try:
        asyncio.run(_mysql_admin(f"CREATE DATABASE {name} CHARACTER SET utf8mb4"))
    except Exception as exc:
        message = f"MariaDB/MySQL unreachable at {MYSQL_SERVER_URL}: {exc}"
        if IN_CI:
            pytest.fail(message)  # CI must run these tests, never skip them
        pytest.skip(message)
    url = make_url(MYSQL_SERVER_URL).set(database=name).render_as_string(hide_password=False)
    try:
        asyncio.run(_migrate(url))
        yield url
    finally:
        asyncio.run(_mysql_admin(f"DROP DATABASE IF EXISTS {name}"))


@pytest.fixture(params=["sqlite", pytest.param("mariadb", marks=pytest.mark.mariadb)])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Run the test once on the embedded SQLite default and once on MariaDB/MySQL."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db')}/gateway.db"
    url: str = request.getfixturevalue("mysql_url")
    return url


@pytest.fixture(params=["sqlite", pytest.param("mariadb", marks=pytest.mark.mariadb)])
def empty_database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Like ``database_url`` but a database of the test's own, not migrated yet."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db')}/gateway.db"
        return
    yield request.getfixturevalue("fresh_mysql_url")


@pytest.fixture
def fresh_mysql_url(mysql_url: str) -> Iterator[str]:
    """An empty MariaDB/MySQL database of the test's own (``mysql_url`` checks the server)."""
    name = f"pgw_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_mysql_admin(f"CREATE DATABASE {name} CHARACTER SET utf8mb4"))
    try:
        yield make_url(MYSQL_SERVER_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_mysql_admin(f"DROP DATABASE IF EXISTS {name}"))
