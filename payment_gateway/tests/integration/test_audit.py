"""The audit trail: who did what, when and from where, in the `audit` logger, never card data."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from payment_gateway.audit import FAILED_AUTH_LINES_PER_MINUTE

from .conftest import MERCHANT_ONE, Gateway, payment_body
from .test_cli import run_cli

PAN = "4242424242424242"


def audit_events(caplog: pytest.LogCaptureFixture, action: str) -> list[dict[str, Any]]:
    return [
        record.msg
        for record in caplog.records
        if record.name == "audit" and isinstance(record.msg, dict) and record.msg["event"] == action
    ]


RANDOM_FIELDS = ("merchant_id", "payment_id", "request_id", "timestamp")


async def test_every_payment_read_is_audited_with_who_and_from_where(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    created = await gateway.client.post(
        "/api/v1/payments", json=payment_body(PAN), headers=MERCHANT_ONE
    )
    payment_id = created.json()["id"]
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.WARNING)  # LOG_LEVEL=WARNING: audit lines are kept all the same
    caplog.handler.setLevel(logging.DEBUG)
    caplog.clear()
    try:
        read = await gateway.client.get(
            f"/api/v1/payments/{payment_id}", headers=MERCHANT_ONE | {"X-Request-ID": "audit-1"}
        )
        other = await gateway.client.get(
            f"/api/v1/payments/{payment_id}",
            headers={"Authorization": "Bearer second_merchant_mock_token"},
        )
        await gateway.client.post("/api/v1/payments", json=payment_body(), headers=MERCHANT_ONE)
    finally:
        root.setLevel(level)
    assert (read.status_code, other.status_code) == (200, 404)
    assert not [r for r in caplog.records if r.levelno < logging.WARNING and r.name != "audit"]
    reads = audit_events(caplog, "payment_read")
    assert [(e["payment_id"], e["found"]) for e in reads] == [
        (payment_id, True),
        (payment_id, False),
    ]
    assert reads[0]["request_id"] == "audit-1"
    assert reads[0]["client_address"] == "127.0.0.1"
    assert reads[0]["merchant_id"] != reads[1]["merchant_id"]
    assert PAN not in str(reads)
    # Nor its last four: the ids and the timestamp are left out, as random digits in them may
    # spell any four (a request id "…ef4242ab…" once did).
    described = [{k: v for k, v in e.items() if k not in RANDOM_FIELDS} for e in reads]
    assert PAN[-4:] not in str(described)


async def test_failed_authentications_are_audited_but_cannot_flood_the_log(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        # 15 bad keys: within the address's rate limit (a burst of 20), past the log's 10.
        for attempt in range(15):
            response = await gateway.client.get(
                "/api/v1/payments/x", headers={"Authorization": f"Bearer guess-{attempt}"}
            )
            assert response.status_code == 401
    failed = audit_events(caplog, "authentication_failed")
    assert len(failed) == FAILED_AUTH_LINES_PER_MINUTE
    assert failed[0]["reason"] == "unknown or revoked API key"
    assert failed[0]["client_address"] == "127.0.0.1"
    assert "guess-" not in str(failed)  # no part of a presented key is kept


def test_key_creation_revocation_and_rotation_are_audited_with_the_operator(
    tmp_path: Path,
) -> None:
    created = run_cli(tmp_path, "merchants", "create", "acme", env={"LOG_FORMAT": "json"})
    key = next(line.split()[-1] for line in created.stdout.splitlines() if "api key" in line)
    revoked = run_cli(tmp_path, "merchants", "revoke", key[:12], env={"LOG_FORMAT": "json"})
    rotated = run_cli(tmp_path, "rotate-card-keys", env={"LOG_FORMAT": "json"})
    assert (created.returncode, revoked.returncode, rotated.returncode) == (0, 0, 0)

    lines = [
        json.loads(line)
        for result in (created, revoked, rotated)
        for line in result.stderr.splitlines()
        if line.startswith("{")
    ]
    audit = {line["event"]: line for line in lines if line.get("logger") == "audit"}
    assert set(audit) == {"api_key_created", "api_key_revoked", "card_keys_rotated"}
    assert audit["api_key_created"]["merchant_name"] == "acme"
    assert audit["api_key_created"]["key_prefix"] == key[:12]
    assert audit["api_key_revoked"]["keys"] == 1
    assert all(line["actor"].startswith("operator:") for line in audit.values())
    assert all("timestamp" in line for line in audit.values())
    assert key not in json.dumps(lines)  # the key is printed once to stdout, never logged
