"""The benchmark's own MariaDB database and user, and the count of the gateway's statements."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from dataclasses import dataclass
from typing import Any

import asyncmy
from asyncmy.errors import OperationalError

from bench.progress import log
from bench.results import CountMethod

MARIADB_HOST = "127.0.0.1"
MARIADB_PORT = 3306
MARIADB_ADMIN_USER = "root"
MARIADB_ADMIN_PASSWORD = ""  # the local development server; see README "Testing"


class MariaDB:
    """One administrative connection, used synchronously; counts the statements it sends."""

    def __init__(self) -> None:
        self._runner = asyncio.Runner()
        self._connection = self._runner.run(
            asyncmy.connect(
                host=MARIADB_HOST,
                port=MARIADB_PORT,
                user=MARIADB_ADMIN_USER,
                password=MARIADB_ADMIN_PASSWORD,
                autocommit=True,
            )
        )
        self.statements_sent = 0

    def query(self, sql: str, args: tuple[Any, ...] | None = None) -> list[tuple[Any, ...]]:
        self.statements_sent += 1
        return self._runner.run(self._query(sql, args))

    async def _query(self, sql: str, args: tuple[Any, ...] | None) -> list[tuple[Any, ...]]:
        async with self._connection.cursor() as cursor:
            await cursor.execute(sql, args)
            return list(await cursor.fetchall() or [])

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._connection.close()
        self._runner.close()


@dataclass(frozen=True)
class StatementCount:
    """Statements seen by the server at one instant (see BenchDatabase.statement_count)."""

    bench_user: int | None  # statements of the gateway's own user (userstat), if available
    global_questions: int  # every client's statements (SHOW GLOBAL STATUS 'Questions')
    harness: int  # statements this harness sent itself


@dataclass(frozen=True)
class StatementDelta:
    gateway: int  # statements attributed to the gateway
    other_clients: int | None  # statements of unrelated clients (other tests, ...) meanwhile
    method: CountMethod

    @staticmethod
    def between(before: StatementCount, after: StatementCount) -> StatementDelta:
        harness = after.harness - before.harness
        questions = after.global_questions - before.global_questions
        if before.bench_user is not None and after.bench_user is not None:
            gateway = after.bench_user - before.bench_user
            return StatementDelta(gateway, questions - harness - gateway, "user_statistics")
        return StatementDelta(questions - harness, None, "global_questions")


class BenchDatabase:
    """A fresh database and user for one benchmark; dropped afterwards.

    The gateway connects as its own user so that its statements can be counted apart from
    other clients of the shared server, through MariaDB's user statistics (``userstat``,
    switched on for the run and restored afterwards). Without the privilege to switch it on,
    the count falls back to the global ``Questions`` counter minus the harness's own queries.
    """

    def __init__(self, admin: MariaDB) -> None:
        self.admin = admin
        self.name = f"pgw_bench_{secrets.token_hex(4)}"
        self.user = self.name
        self.password = secrets.token_hex(16)
        self.created = False
        self.user_created = False
        self.userstat_was: int | None = None
        self.userstat = False

    @property
    def url(self) -> str:
        return (
            f"mysql+asyncmy://{self.user}:{self.password}@{MARIADB_HOST}:{MARIADB_PORT}/{self.name}"
        )

    def create(self) -> None:
        self.admin.query(f"CREATE DATABASE `{self.name}` CHARACTER SET utf8mb4")
        self.created = True
        account = f"'{self.user}'@'{MARIADB_HOST}'"
        self.admin.query(f"CREATE USER {account} IDENTIFIED BY %s", (self.password,))
        self.user_created = True
        self.admin.query(f"GRANT ALL PRIVILEGES ON `{self.name}`.* TO {account}")
        self.userstat_was = int(self.admin.query("SELECT @@GLOBAL.userstat")[0][0])
        if self.userstat_was:
            self.userstat = True
            return
        try:
            self.admin.query("SET GLOBAL userstat = 1")
            self.userstat = True
        except OperationalError as error:
            log(f"cannot switch on userstat ({error}): counting global Questions instead")

    def version(self) -> str:
        return str(self.admin.query("SELECT VERSION()")[0][0])

    def statement_count(self) -> StatementCount:
        bench_user = None
        if self.userstat:
            rows = self.admin.query(
                "SELECT SELECT_COMMANDS + UPDATE_COMMANDS + OTHER_COMMANDS"
                " FROM information_schema.USER_STATISTICS WHERE USER = %s",
                (self.user,),
            )
            bench_user = int(rows[0][0]) if rows else 0
        questions = int(self.admin.query("SHOW GLOBAL STATUS LIKE 'Questions'")[0][1])
        # 'Questions' already counts the query that reads it: take the harness count after it.
        return StatementCount(bench_user, questions, self.admin.statements_sent)

    def payment_count(self) -> int:
        return int(self.admin.query(f"SELECT COUNT(*) FROM `{self.name}`.payments")[0][0])  # noqa: S608

    def wait_for_quiet_payments(self, *, timeout: float = 5) -> int:
        """The payment count once it has stopped changing (requests still in flight ended)."""
        deadline = time.monotonic() + timeout
        count = self.payment_count()
        while time.monotonic() < deadline:
            time.sleep(0.5)
            latest = self.payment_count()
            if latest == count:
                break
            count = latest
        return count

    def event_count(self) -> int:
        return int(self.admin.query(f"SELECT COUNT(*) FROM `{self.name}`.events")[0][0])  # noqa: S608

    def event_ids(self) -> list[str]:
        rows = self.admin.query(f"SELECT id FROM `{self.name}`.events")  # noqa: S608
        return [str(row[0]) for row in rows]

    def payment_statuses(self) -> dict[str, int]:
        rows = self.admin.query(
            f"SELECT status, COUNT(*) FROM `{self.name}`.payments GROUP BY status"  # noqa: S608
        )
        return {str(status): int(count) for status, count in rows}

    def drop(self, *, keep: bool) -> None:
        """Drop what create() made and restore userstat; each step even if another failed."""
        steps: list[tuple[str, str]] = []
        if self.created and not keep:
            steps.append((f"drop database {self.name}", f"DROP DATABASE IF EXISTS `{self.name}`"))
        elif self.created:
            log(f"kept database {self.name} (--keep-db)")
        if self.user_created:
            account = f"'{self.user}'@'{MARIADB_HOST}'"
            steps.append((f"drop user {self.user}", f"DROP USER IF EXISTS {account}"))
        if self.userstat and self.userstat_was == 0:
            steps.append(("switch userstat off again", "SET GLOBAL userstat = 0"))
        for what, sql in steps:
            try:
                self.admin.query(sql)
                log(what)
            except Exception as error:  # report it and go on cleaning up
                log(f"could not {what}: {error}")
