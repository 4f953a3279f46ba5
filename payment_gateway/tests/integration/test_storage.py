"""Storage promises on real databases: card data at rest, keys, guarded transitions."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from cryptography.fernet import Fernet
from payment_gateway.bootstrap import build_services, services_for
from payment_gateway.domain.payment import PaymentStatus, Resolution, RetrySchedule
from payment_gateway.service.merchants import DEMO_MERCHANTS
from payment_gateway.service.ports import StatusTransition
from payment_gateway.storage.database import create_engine
from payment_gateway.storage.key_checks import KeyMismatch
from payment_gateway.storage.migrate import alembic_config, migrate
from payment_gateway.storage.rotation import rotate_card_keys
from payment_gateway.storage.tables import cards, merchants, metadata, payments, webhook_endpoints
from payment_gateway.storage.unit_of_work import SqlUnitOfWorkFactory
from payment_gateway.storage.vault import CardVault, VaultKeyError
from pydantic import SecretStr
from sqlalchemy import Connection, inspect, select, update
from sqlalchemy.engine.interfaces import ReflectedColumn
from sqlalchemy.ext.asyncio import AsyncEngine

from .conftest import MERCHANT_ONE, Gateway, gateway_settings, payment_body

SCHEDULE = RetrySchedule(lease_seconds=10, base_seconds=1, max_seconds=60)
PAN = "4000000000000002"
CVV = "7391"
HOLDER = "Zanzibar Quixote"


async def dump_database(engine: AsyncEngine) -> list[tuple[str, str, object]]:
    """Every value of every table, as (table, column, value)."""
    values: list[tuple[str, str, object]] = []
    async with engine.connect() as connection:
        for table in metadata.sorted_tables:
            for row in (await connection.execute(select(table))).mappings():
                values.extend((table.name, column, value) for column, value in row.items())
    return values


async def test_card_data_at_rest_is_encrypted_and_the_cvv_is_not_stored(gateway: Gateway) -> None:
    body = payment_body(PAN)
    body["card"] = {**body["card"], "cvv": CVV, "holder_name": HOLDER}  # type: ignore[dict-item]
    response = await gateway.client.post("/api/v1/payments", json=body, headers=MERCHANT_ONE)
    assert response.status_code == 201
    engine = gateway.app.state.services.uow.engine

    rows = await dump_database(engine)
    as_text = [(t, c, v.decode("latin-1") if isinstance(v, bytes) else str(v)) for t, c, v in rows]
    assert not [r for r in as_text if PAN in r[2]], "the PAN is stored in clear"
    assert not [r for r in as_text if HOLDER in r[2]], "the holder name is stored in clear"
    # Ids, ciphertexts and timestamps (microseconds) are random and may contain any four
    # digits: look everywhere else, inside the events' JSON bodies too.
    readable = [
        (t, c, _without_ids(_without_random_fields(v) if (t, c) == ("events", "body") else v))
        for t, c, v in as_text
        if not c.endswith("_at")
        and c not in {"pan_encrypted", "holder_name_encrypted"}
        and not c.endswith("id")
        and c not in {"key_hash", "request_hash"}
    ]
    assert any(t == "events" for t, _c, _v in readable), "the events must be looked at too"
    assert readable, "the check must look at some columns"
    assert not [r for r in readable if CVV in r[2]], "the CVV is stored"
    columns = {c["name"] for table in ("cards", "payments") for c in await _columns(engine, table)}
    assert not [c for c in columns if "cvv" in c or "cvc" in c]

    vault = CardVault(gateway.settings.encryption_keys)
    async with engine.connect() as connection:
        card = (
            (
                await connection.execute(
                    select(cards)
                    .join(payments, payments.c.card_id == cards.c.id)
                    .where(payments.c.id == response.json()["id"])
                )
            )
            .mappings()
            .one()
        )
    assert vault.decrypt(card["pan_encrypted"]) == PAN
    assert vault.decrypt(card["holder_name_encrypted"]) == HOLDER
    assert (card["bin"], card["last4"], card["brand"]) == ("400000", "0002", "visa")


def _without_random_fields(body: str) -> str:
    """An event's JSON without its ids and timestamps, as the columns are looked at."""

    def keep(value: object) -> object:
        if isinstance(value, dict):
            return {
                key: keep(item) for key, item in value.items() if not key.endswith(("id", "_at"))
            }
        return value

    return json.dumps(keep(json.loads(body)))


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _without_ids(value: str) -> str:
    """A value with the ids inside it (a checkout session's URL, say) blanked out."""
    return _UUID.sub("<id>", value)


def _digests(material: bytes, hash_key: bytes) -> tuple[str, str]:
    return (
        hmac.new(hash_key, material, hashlib.sha256).hexdigest(),
        hashlib.sha256(material).hexdigest(),
    )


def brute_force_cvvs(stored: set[str], hash_key: bytes, fields: list[object]) -> set[str]:
    """Every 3- and 4-digit CVV whose hash, alone or among the request's fields, is stored.

    What the security review did with a dump and the app's secrets: the other fields are
    known (the PAN decrypts), so each guess is hashed wherever in the content it could sit.
    """
    guesses = [f"{n:03d}" for n in range(1000)] + [f"{n:04d}" for n in range(10_000)]
    found: set[str] = set()
    for guess in guesses:
        materials = [guess.encode()] + [
            json.dumps([*fields[:at], guess, *fields[at:]], ensure_ascii=False).encode()
            for at in range(len(fields) + 1)
        ]
        if any(d in stored for m in materials for d in _digests(m, hash_key)):
            found.add(guess)
    return found


async def test_no_cvv_can_be_brute_forced_from_a_dump_of_every_table(gateway: Gateway) -> None:
    body = payment_body(PAN)
    body["card"] = {**body["card"], "cvv": CVV, "holder_name": HOLDER}  # type: ignore[dict-item]
    headers = {**MERCHANT_ONE, "Idempotency-Key": "brute-force-me"}
    response = await gateway.client.post("/api/v1/payments", json=body, headers=headers)
    assert response.status_code == 201
    engine = gateway.app.state.services.uow.engine
    rows = await dump_database(engine)
    stored = {v.hex() if isinstance(v, bytes) else str(v) for _t, _c, v in rows}

    # The attacker holds the app's secrets: the card decrypts, the hash key is known.
    vault = CardVault(gateway.settings.encryption_keys)
    async with engine.connect() as connection:
        stored_card = (
            await connection.execute(
                select(cards.c.pan_encrypted, cards.c.holder_name_encrypted)
                .join(payments, payments.c.card_id == cards.c.id)
                .where(payments.c.id == response.json()["id"])
            )
        ).one()
    card = body["card"]
    assert isinstance(card, dict)
    fields: list[object] = [
        vault.decrypt(stored_card.pan_encrypted),
        card["expiry_month"],
        card["expiry_year"],
        vault.decrypt(stored_card.holder_name_encrypted),
        body["amount"],
        body["currency"],
        body["reference"],
    ]
    hash_key = gateway.settings.idempotency_key_bytes
    assert brute_force_cvvs(stored, hash_key, fields) == set()

    # The same search finds the CVV in a fingerprint of the kind stored before migration 0002.
    old_style = json.dumps([fields[0], CVV, *fields[1:]], ensure_ascii=False).encode()
    assert brute_force_cvvs(set(_digests(old_style, hash_key)), hash_key, fields) == {CVV}


async def _columns(engine: AsyncEngine, table: str) -> list[ReflectedColumn]:
    async with engine.connect() as connection:
        return await connection.run_sync(lambda sync: inspect(sync).get_columns(table))


async def test_api_keys_are_stored_only_as_hashes(gateway: Gateway) -> None:
    rows = await dump_database(gateway.app.state.services.uow.engine)
    stored = " ".join(str(value) for _t, _c, value in rows)
    for token in DEMO_MERCHANTS.values():
        assert token not in stored
        assert hashlib.sha256(token.encode()).hexdigest() in stored


async def test_a_terminal_status_never_changes_even_in_sql(gateway: Gateway) -> None:
    created = (
        await gateway.client.post("/api/v1/payments", json=payment_body(), headers=MERCHANT_ONE)
    ).json()
    assert created["status"] == "succeeded"
    uow_factory: SqlUnitOfWorkFactory = gateway.app.state.services.uow
    now = datetime.now(UTC)

    for attempt in (
        Resolution(PaymentStatus.FAILED, decline_reason="bank_unavailable"),
        Resolution(PaymentStatus.PROCESSING),
        Resolution(PaymentStatus.SUCCEEDED, code="0", tracking_id="other"),
    ):
        transition = StatusTransition(created["id"], "any", attempt, now, None)
        async with uow_factory() as uow:
            assert await uow.payments.apply_transitions([transition]) == 0
            await uow.commit()

    read = await gateway.client.get(f"/api/v1/payments/{created['id']}", headers=MERCHANT_ONE)
    assert read.json() == created


async def test_concurrent_resolutions_apply_once(gateway: Gateway) -> None:
    gateway.bank.answers.clear()
    created = (
        await gateway.client.post(
            "/api/v1/payments", json=payment_body("4000000000009995"), headers=MERCHANT_ONE
        )
    ).json()
    assert created["status"] == "processing"
    uow_factory: SqlUnitOfWorkFactory = gateway.app.state.services.uow

    async def resolve(status: PaymentStatus) -> bool:
        transition = StatusTransition(
            created["id"], "any", Resolution(status, code="x"), datetime.now(UTC), None
        )
        async with uow_factory() as uow:
            applied = await uow.payments.apply_transitions([transition]) == 1
            await uow.commit()
            return applied

    results = await asyncio.gather(
        *(resolve(PaymentStatus.SUCCEEDED if i % 2 else PaymentStatus.FAILED) for i in range(20))
    )
    assert results.count(True) == 1


async def test_a_batch_keeps_each_payments_3_d_secure(gateway: Gateway) -> None:
    """In a batch where one transition carries an authentication's answer and another none
    (the reconciler's), each payment keeps the 3-D Secure it has (group commit mixes them)."""
    body = payment_body(
        "4000000000003055", three_d_secure={"return_url": "https://shop.example/back"}
    )
    created = [
        (await gateway.client.post("/api/v1/payments", json=body, headers=MERCHANT_ONE)).json()
        for _ in range(2)
    ]
    ids = [payment["id"] for payment in created]
    services = gateway.app.state.services
    async with services.uow.engine.begin() as connection:  # both back to processing
        await connection.execute(
            update(payments).where(payments.c.id.in_(ids)).values(status="processing")
        )
    async with services.uow() as uow:
        stored = {payment.id: payment for payment in await uow.payments.get_many(ids)}
    now = datetime.now(UTC)
    batch = [
        StatusTransition(
            ids[0],
            "any",
            Resolution(PaymentStatus.SUCCEEDED, three_d_secure=stored[ids[0]].three_d_secure),
            now,
            None,
        ),
        StatusTransition(ids[1], "any", Resolution(PaymentStatus.SUCCEEDED), now, None),
    ]
    async with services.uow() as uow:
        assert await uow.payments.apply_transitions(batch) == 2
        await uow.commit()

    async with services.uow() as uow:
        after = {payment.id: payment for payment in await uow.payments.get_many(ids)}
    assert [after[i].three_d_secure for i in ids] == [stored[i].three_d_secure for i in ids]
    assert all(after[i].three_d_secure is not None for i in ids)


async def test_migrations_match_the_table_definitions(empty_database_url: str) -> None:
    engine = create_engine(empty_database_url, pool_size=1)
    from payment_gateway.storage.migrate import migrate

    try:
        await migrate(engine)
        await migrate(engine)  # a second run is a no-op
        async with engine.connect() as connection:
            diff = await connection.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
            )
    finally:
        await engine.dispose()
    assert diff == []


async def test_each_migration_s_downgrade_restores_the_schema_before_it(
    empty_database_url: str,
) -> None:
    """One step at a time, from an empty database to head: a migration's downgrade leaves
    the schema exactly as it was before its upgrade (an operator's way back from a release),
    and the first one's leaves no table."""
    script = ScriptDirectory.from_config(alembic_config())
    revisions = [revision.revision for revision in script.walk_revisions()][::-1]
    engine = create_engine(empty_database_url, pool_size=1)
    not_undone: list[str] = []
    try:
        previous = "base"
        for revision in revisions:
            async with engine.begin() as connection:
                before = await connection.run_sync(_schema)
                await connection.run_sync(_upgrade_to, revision)
                await connection.run_sync(_downgrade_to, previous)
                if await connection.run_sync(_schema) != before:
                    not_undone.append(revision)
                await connection.run_sync(_upgrade_to, revision)
            previous = revision
        async with engine.begin() as connection:
            await connection.run_sync(_downgrade_to, "base")
            empty = await connection.run_sync(_schema)
    finally:
        await engine.dispose()
    assert len(revisions) >= 10
    assert not_undone == []
    assert empty == {}


def _schema(connection: Connection) -> dict[str, object]:
    """Each table's columns, indexes, unique constraints and foreign keys, comparably."""
    inspector = inspect(connection)
    schema: dict[str, object] = {}
    for table in sorted(set(inspector.get_table_names()) - {"alembic_version"}):
        schema[table] = (
            sorted(
                (column["name"], str(column["type"]), column["nullable"])
                for column in inspector.get_columns(table)
            ),
            sorted(
                (str(index["name"]), tuple(map(str, index["column_names"])), index["unique"])
                for index in inspector.get_indexes(table)
            ),
            sorted(
                tuple(unique["column_names"]) for unique in inspector.get_unique_constraints(table)
            ),
            sorted(
                (tuple(key["constrained_columns"]), key["referred_table"])
                for key in inspector.get_foreign_keys(table)
            ),
        )
    return schema


async def test_migration_0002_erases_the_fingerprints_that_covered_the_cvv(
    empty_database_url: str,
) -> None:
    engine = create_engine(empty_database_url, pool_size=1)
    now = datetime.now(UTC)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_upgrade_to, "0001")
            await connection.execute(
                merchants.insert(), {"id": "m1", "name": "m", "created_at": now}
            )
            await connection.execute(
                cards.insert(),
                {
                    "id": "c1",
                    "merchant_id": "m1",
                    "pan_encrypted": b"token",
                    "last4": "4242",
                    "brand": "visa",
                    "expiry_month": 12,
                    "expiry_year": 2042,
                    "created_at": now,
                },
            )
            await connection.execute(
                payments.insert().values(
                    id="p1",
                    merchant_id="m1",
                    card_id="c1",
                    status="succeeded",
                    amount=1,
                    currency="USD",
                    idempotency_key="k",
                    request_hash="ab" * 32,
                    created_at=now,
                    updated_at=now,
                )
            )
        await migrate(engine)
        async with engine.connect() as connection:
            row = (
                await connection.execute(
                    select(payments.c.idempotency_key, payments.c.request_hash)
                )
            ).one()
    finally:
        await engine.dispose()
    assert (row.idempotency_key, row.request_hash) == ("k", None)


def _upgrade_to(connection: Connection, revision: str) -> None:
    command.upgrade(alembic_config(connection), revision)


def _downgrade_to(connection: Connection, revision: str) -> None:
    command.downgrade(alembic_config(connection), revision)


async def test_rotating_card_keys_lets_the_old_key_go(
    empty_database_url: str, tmp_path: Path
) -> None:
    old_key, new_key = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings = gateway_settings(
        empty_database_url, tmp_path, card_encryption_keys=SecretStr(old_key)
    )
    import httpx
    from asgi_lifespan import LifespanManager
    from fakes import FakeBank
    from payment_gateway.main import create_app

    app = create_app(settings, bank=FakeBank(), run_reconciler=False)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            created = [
                (
                    await client.post("/api/v1/payments", json=payment_body(), headers=MERCHANT_ONE)
                ).json()["id"]
                for _ in range(7)
            ]
            endpoint = await client.post(
                "/api/v1/webhook-endpoints",
                json={"url": "http://127.0.0.1:9/hooks"},
                headers=MERCHANT_ONE,
            )
            rotated_endpoint = await client.post(
                f"/api/v1/webhook-endpoints/{endpoint.json()['id']}/rotate-secret",
                headers=MERCHANT_ONE,
            )
    both = gateway_settings(
        empty_database_url, tmp_path, card_encryption_keys=SecretStr(f"{new_key},{old_key}")
    )
    async with services_for(both, FakeBank()) as services:
        assert await rotate_card_keys(services.uow.engine, services.vault, batch_size=3) == 7

    engine = create_engine(empty_database_url, pool_size=1)
    try:
        async with engine.connect() as connection:
            tokens = (
                (
                    await connection.execute(
                        select(cards.c.pan_encrypted)
                        .join(payments, payments.c.card_id == cards.c.id)
                        .where(payments.c.id.in_(created))
                    )
                )
                .scalars()
                .all()
            )
            secrets = (
                await connection.execute(
                    select(
                        webhook_endpoints.c.secret_encrypted,
                        webhook_endpoints.c.previous_secret_encrypted,
                    ).where(webhook_endpoints.c.id == endpoint.json()["id"])
                )
            ).one()
    finally:
        await engine.dispose()
    assert len(tokens) == 7
    new_only = CardVault([new_key.encode()])
    assert {new_only.decrypt(token) for token in tokens} == {"4242424242424242"}
    # The webhook secrets, current and previous, are under the new key as well.
    assert new_only.decrypt(secrets.secret_encrypted) == rotated_endpoint.json()["secret"]
    assert new_only.decrypt(secrets.previous_secret_encrypted) == endpoint.json()["secret"]
    with pytest.raises(VaultKeyError):
        CardVault([old_key.encode()]).decrypt(tokens[0])
    # From now on a replica still on the old key would write cards the others cannot read.
    old_only = gateway_settings(
        empty_database_url, tmp_path, card_encryption_keys=SecretStr(old_key)
    )
    with pytest.raises(KeyMismatch, match="CARD_ENCRYPTION_KEYS"):
        await build_services(old_only, FakeBank())
    new_only_settings = gateway_settings(
        empty_database_url, tmp_path, card_encryption_keys=SecretStr(new_key)
    )
    async with services_for(new_only_settings, FakeBank()):
        pass


@pytest.mark.mariadb
async def test_reconcilers_on_two_replicas_claim_disjoint_batches(mysql_url: str) -> None:
    engine = create_engine(mysql_url, pool_size=5)
    uow_factory = SqlUnitOfWorkFactory(engine)
    now = datetime.now(UTC)
    try:
        async with engine.begin() as connection:
            # Make every open payment of earlier tests not due, then some of ours due.
            await connection.execute(
                update(payments)
                .where(payments.c.status.in_(["init", "processing"]))
                .values(next_attempt_at=now + timedelta(hours=1))
            )
            merchant_id = "merchant-claim-test"
            await connection.execute(
                merchants.insert(), {"id": merchant_id, "name": merchant_id, "created_at": now}
            )
            card_id = "card-claim-test"
            await connection.execute(
                cards.insert(),
                {
                    "id": card_id,
                    "merchant_id": merchant_id,
                    "pan_encrypted": b"x",
                    "bin": "424242",
                    "last4": "4242",
                    "brand": "visa",
                    "expiry_month": 1,
                    "expiry_year": 2042,
                    "created_at": now,
                },
            )
            await connection.execute(
                payments.insert(),
                [
                    {
                        "id": f"claim-{i:03d}",
                        "merchant_id": merchant_id,
                        "card_id": card_id,
                        "status": "processing",
                        "amount": 1,
                        "currency": "USD",
                        "created_at": now,
                        "updated_at": now,
                        "next_attempt_at": now - timedelta(seconds=1),
                        "attempts": 0,
                    }
                    for i in range(40)
                ],
            )

        async def claim() -> list[str]:
            async with uow_factory() as uow:
                due = await uow.payments.claim_due(datetime.now(UTC), 15, SCHEDULE)
                await asyncio.sleep(0.05)  # hold the row locks while the other replica claims
                await uow.commit()
            return [payment.id for payment in due]

        batches = await asyncio.gather(*(claim() for _ in range(4)))
        claimed = [pid for batch in batches for pid in batch]
        assert len(claimed) == len(set(claimed)) == 40
        async with uow_factory() as uow:
            assert await uow.payments.claim_due(datetime.now(UTC), 100, SCHEDULE) == []
    finally:
        async with engine.begin() as connection:
            await connection.execute(
                payments.delete().where(payments.c.card_id == "card-claim-test")
            )
            await connection.execute(cards.delete().where(cards.c.id == "card-claim-test"))
            await connection.execute(
                merchants.delete().where(merchants.c.id == "merchant-claim-test")
            )
        await engine.dispose()


async def _kill_connections(database: str) -> int:
    """Drop every server connection to ``database``, as a restart or failover would."""
    from mariadb_server import MYSQL_SERVER_URL
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    admin = create_async_engine(MYSQL_SERVER_URL, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as connection:
            ids = (
                (
                    await connection.execute(
                        text("SELECT id FROM information_schema.processlist WHERE db = :db"),
                        {"db": database},
                    )
                )
                .scalars()
                .all()
            )
            for connection_id in ids:
                await connection.execute(text(f"KILL {int(connection_id)}"))
    finally:
        await admin.dispose()
    return len(ids)


@pytest.mark.mariadb
async def test_lost_database_connections_never_turn_a_payment_into_a_500(
    fresh_mysql_url: str, tmp_path: Path
) -> None:
    import httpx
    from asgi_lifespan import LifespanManager
    from fakes import FakeBank
    from payment_gateway.main import create_app
    from sqlalchemy.engine import make_url

    bank = FakeBank()
    settings = gateway_settings(fresh_mysql_url, tmp_path, merchant_cache_seconds=60)
    app = create_app(settings, bank=bank, run_reconciler=False)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            warm = await client.post("/api/v1/payments", json=payment_body(), headers=MERCHANT_ONE)
            assert warm.status_code == 201
            assert await _kill_connections(make_url(fresh_mysql_url).database or "") > 0

            after = [
                await client.post("/api/v1/payments", json=payment_body(), headers=MERCHANT_ONE)
                for _ in range(3)
            ]
    assert [r.status_code for r in after] == [201, 201, 201]
    assert [r.json()["status"] for r in after] == ["succeeded"] * 3
    assert len(bank.deposits) == 4  # one per payment: nothing charged twice
