"""Operator commands, run the way an operator runs them (as a process)."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest


def run_cli(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "payment_gateway", *args],
        cwd=tmp_path,
        env={
            **os.environ,
            "DATA_DIR": str(tmp_path / "var"),
            "LOG_LEVEL": "WARNING",
            "DEMO_MERCHANTS": "false",
            **(env or {}),
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_merchant_key_lifecycle(tmp_path: Path) -> None:
    created = run_cli(tmp_path, "merchants", "create", "acme")
    assert created.returncode == 0, created.stderr
    key = next(line.split()[-1] for line in created.stdout.splitlines() if "api key" in line)
    assert key.startswith("pgw_")
    assert len(key) > 40

    database = sqlite3.connect(tmp_path / "var" / "gateway.db")
    stored = " ".join(str(row) for row in database.execute("SELECT * FROM api_keys"))
    assert key not in stored  # only the hash is kept
    assert hashlib.sha256(key.encode()).hexdigest() in stored

    listed = run_cli(tmp_path, "merchants", "list")
    assert listed.returncode == 0
    assert "acme" in listed.stdout
    assert key[:12] in listed.stdout
    assert key not in listed.stdout

    duplicate = run_cli(tmp_path, "merchants", "create", "acme")
    assert duplicate.returncode == 1
    assert "already exists" in duplicate.stderr

    revoked = run_cli(tmp_path, "merchants", "revoke", key[:12])
    assert revoked.returncode == 0
    assert "revoked 1" in revoked.stdout
    (revoked_at,) = database.execute("SELECT revoked_at FROM api_keys").fetchone()
    assert revoked_at is not None
    assert "revoked" in run_cli(tmp_path, "merchants", "list").stdout


def test_migrate_command_is_idempotent(tmp_path: Path) -> None:
    for _ in range(2):
        result = run_cli(tmp_path, "migrate")
        assert result.returncode == 0, result.stderr
        assert "migrations applied" in result.stdout
    tables = {
        name
        for (name,) in sqlite3.connect(tmp_path / "var" / "gateway.db").execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'"
        )
    }
    assert {"merchants", "api_keys", "cards", "payments", "alembic_version"} <= tables


@pytest.mark.parametrize("keys", ["", ",", "not-a-fernet-key"])
def test_production_refuses_to_start_without_real_keys(tmp_path: Path, keys: str) -> None:
    result = run_cli(
        tmp_path,
        "migrate",
        env={
            "APP_ENV": "production",
            "CARD_ENCRYPTION_KEYS": keys,
            "IDEMPOTENCY_HASH_KEY": "x" * 32,
            "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/p.db",
        },
    )
    assert result.returncode != 0
    assert "CARD_ENCRYPTION_KEYS" in result.stderr


def test_checkout_create_prints_a_ready_link(tmp_path: Path) -> None:
    env = {"DEMO_MERCHANTS": "true", "PUBLIC_URL": "http://127.0.0.1:9999/"}
    created = run_cli(tmp_path, "checkout", "create", "merchant_one", "--amount", "2500", env=env)
    assert created.returncode == 0, created.stderr
    url = created.stdout.strip().splitlines()[-1]
    assert url.startswith("http://127.0.0.1:9999/checkout/cs_")

    unknown = run_cli(tmp_path, "checkout", "create", "nobody", env=env)
    assert unknown.returncode == 1
    assert "no merchant 'nobody'" in unknown.stderr
    invalid = run_cli(tmp_path, "checkout", "create", "merchant_one", "--currency", "XYZ", env=env)
    assert invalid.returncode == 1
    assert "currency" in invalid.stderr
