"""The merchant API end to end in-process, on real SQLite and real MariaDB."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fakes import FakeBank
from payment_gateway.api.schemas import PaymentOut
from payment_gateway.main import create_app
from payment_gateway.storage.tables import payments
from sqlalchemy import func, select

from .conftest import MERCHANT_ONE, MERCHANT_TWO, Gateway, gateway_settings, payment_body

OUTCOMES = [
    ("4242424242424242", "succeeded", "0", None),
    ("4000000000000002", "failed", "100", "insufficient_funds"),
    ("4000000000009995", "processing", "200", None),
    ("5555555555554444", "failed", "100", "card_not_supported"),
]


async def count_payments(gw: Gateway) -> int:
    async with gw.app.state.services.uow.engine.connect() as connection:
        return int(await connection.scalar(select(func.count()).select_from(payments)) or 0)


@pytest.mark.parametrize(("number", "status", "code", "reason"), OUTCOMES)
async def test_each_card_outcome_is_created_stored_and_readable(
    gateway: Gateway, number: str, status: str, code: str, reason: str | None
) -> None:
    response = await gateway.client.post(
        "/api/v1/payments", json=payment_body(number), headers=MERCHANT_ONE
    )

    assert response.status_code == 201
    created = response.json()
    PaymentOut.model_validate(created)  # the documented shape
    assert response.headers["location"] == f"/api/v1/payments/{created['id']}"
    assert (created["status"], created["code"], created["decline_reason"]) == (status, code, reason)
    assert created["card"]["masked_number"] == f"**** **** **** {number[-4:]}"
    assert created["amount"] == 1000
    assert created["currency"] == "USD"
    assert created["created_at"].endswith("Z")
    assert created["tracking_id"]
    assert [deposit[0] for deposit in gateway.bank.deposits] == [created["id"]]

    read = await gateway.client.get(response.headers["location"], headers=MERCHANT_ONE)
    assert read.status_code == 200
    assert read.json() == created


async def test_legacy_singular_path_still_works(gateway: Gateway) -> None:
    created = await gateway.client.post(
        "/api/v1/payment", json=payment_body(), headers=MERCHANT_ONE
    )
    assert created.status_code == 201
    read = await gateway.client.get(f"/api/v1/payment/{created.json()['id']}", headers=MERCHANT_ONE)
    assert read.status_code == 200
    assert read.json()["id"] == created.json()["id"]


async def test_a_merchant_never_reads_another_merchants_payment(gateway: Gateway) -> None:
    created = await gateway.client.post(
        "/api/v1/payments", json=payment_body(), headers=MERCHANT_ONE
    )
    other = await gateway.client.get(created.headers["location"], headers=MERCHANT_TWO)
    unknown = await gateway.client.get(f"/api/v1/payments/{uuid.uuid4()}", headers=MERCHANT_TWO)

    assert other.status_code == unknown.status_code == 404
    assert other.headers["content-type"] == "application/problem+json"
    # Indistinguishable from an id that does not exist: same title, same kind of detail.
    assert other.json()["title"] == unknown.json()["title"]
    assert "merchant" not in other.text


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer not-a-key"},
        {"Authorization": "Basic Zmlyc3RfbWVyY2hhbnRfbW9ja190b2tlbjo="},
        {"Authorization": "first_merchant_mock_token"},
    ],
)
async def test_unauthenticated_requests_get_401_before_anything_else(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    # An invalid body, key or media type must not be reported: authentication runs first.
    response = await gateway.client.post(
        "/api/v1/payments",
        content=b"{not json",
        headers=headers | {"Idempotency-Key": "k" * 300, "Content-Type": "text/plain"},
    )
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.headers["content-type"] == "application/problem+json"
    assert gateway.bank.deposits == []
    get = await gateway.client.get(f"/api/v1/payments/{uuid.uuid4()}", headers=headers)
    assert get.status_code == 401


INVALID_BODIES = [
    (payment_body("4242424242424241"), "card.number"),
    (payment_body(amount=0), "amount"),
    (payment_body(amount="1000"), "amount"),
    (payment_body(currency="XYZ"), "currency"),
    (payment_body(reference="r" * 65), "reference"),
    ({**payment_body(), "surprise": 1}, "surprise"),
    (
        payment_body(
            card={
                "number": "4242424242424242",
                "expiry_month": 1,
                "expiry_year": 2020,
                "cvv": "123",
            }
        ),
        "card.expiry_year",
    ),
    (
        payment_body(
            card={
                "number": "4242424242424242",
                "expiry_month": 12,
                "expiry_year": 2042,
                "cvv": "12",
            }
        ),
        "card.cvv",
    ),
]


@pytest.mark.parametrize(("body", "field"), INVALID_BODIES)
async def test_invalid_requests_get_422_naming_the_field_and_change_nothing(
    gateway: Gateway, body: dict[str, object], field: str
) -> None:
    response = await gateway.client.post(
        "/api/v1/payments", json=body, headers=MERCHANT_ONE | {"Idempotency-Key": "k-invalid"}
    )

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert {"type", "title", "status", "detail", "errors"} <= problem.keys()
    assert field in [error["field"] for error in problem["errors"]]
    assert gateway.bank.deposits == []
    # The key was not claimed by the rejected request: a valid one with it goes through.
    ok = await gateway.client.post(
        "/api/v1/payments",
        json=payment_body(),
        headers=MERCHANT_ONE | {"Idempotency-Key": f"k-invalid-{uuid.uuid4()}"},
    )
    assert ok.status_code == 201


async def test_invalid_requests_write_no_row(gateway: Gateway) -> None:
    before = await count_payments(gateway)
    for body, _field in INVALID_BODIES:
        await gateway.client.post("/api/v1/payments", json=body, headers=MERCHANT_ONE)
    assert await count_payments(gateway) == before
    assert gateway.bank.deposits == []


async def test_transport_level_errors(gateway: Gateway) -> None:
    too_large = await gateway.client.post(
        "/api/v1/payments", content=b"{" + b" " * 70_000 + b"}", headers=MERCHANT_ONE
    )
    wrong_type = await gateway.client.post(
        "/api/v1/payments",
        content=b"card=4242424242424242",
        headers=MERCHANT_ONE | {"Content-Type": "application/x-www-form-urlencoded"},
    )
    malformed = await gateway.client.post(
        "/api/v1/payments",
        content=b'{"amount": 10',
        headers=MERCHANT_ONE | {"Content-Type": "application/json"},
    )
    no_type = await gateway.client.post(
        "/api/v1/payments",
        content=_json_bytes(payment_body()),
        headers=MERCHANT_ONE,
    )
    assert too_large.status_code == 413
    assert wrong_type.status_code == 415
    assert malformed.status_code == 422
    assert malformed.json()["errors"][0]["field"] == "body"
    assert no_type.status_code == 201  # a missing Content-Type is read as JSON
    assert len(gateway.bank.deposits) == 1


def _json_bytes(body: dict[str, object]) -> bytes:
    import json

    return json.dumps(body).encode()


@pytest.mark.parametrize("key", ["", "k" * 256])
async def test_bad_idempotency_key_is_422_naming_the_header(gateway: Gateway, key: str) -> None:
    response = await gateway.client.post(
        "/api/v1/payments", json=payment_body(), headers=MERCHANT_ONE | {"Idempotency-Key": key}
    )
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["Idempotency-Key"]
    assert gateway.bank.deposits == []


async def test_idempotent_retry_replays_the_payment_as_it_stands(gateway: Gateway) -> None:
    key = {"Idempotency-Key": f"order-{uuid.uuid4()}"}
    headers = MERCHANT_ONE | key
    first = await gateway.client.post("/api/v1/payments", json=payment_body(), headers=headers)
    again = await gateway.client.post("/api/v1/payments", json=payment_body(), headers=headers)
    changed = await gateway.client.post(
        "/api/v1/payments", json=payment_body(amount=999), headers=headers
    )

    assert first.status_code == again.status_code == 201
    assert "idempotent-replayed" not in first.headers
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert changed.status_code == 422
    assert len(gateway.bank.deposits) == 1
    # The same key belongs to each merchant separately.
    other = await gateway.client.post(
        "/api/v1/payments", json=payment_body(), headers=MERCHANT_TWO | key
    )
    assert other.status_code == 201
    assert other.json()["id"] != first.json()["id"]


async def test_fifty_concurrent_duplicates_make_one_deposit(gateway: Gateway) -> None:
    headers = MERCHANT_ONE | {"Idempotency-Key": f"burst-{uuid.uuid4()}"}
    responses = await asyncio.gather(
        *(
            gateway.client.post("/api/v1/payments", json=payment_body(), headers=headers)
            for _ in range(50)
        )
    )
    statuses = sorted({r.status_code for r in responses})
    assert set(statuses) <= {201, 409}
    ids = {r.json()["id"] for r in responses if r.status_code == 201}
    assert len(ids) == 1
    assert len(gateway.bank.deposits) == 1


async def test_concurrent_payments_all_succeed_without_lock_errors(gateway: Gateway) -> None:
    responses = await asyncio.gather(
        *(
            gateway.client.post("/api/v1/payments", json=payment_body(), headers=MERCHANT_ONE)
            for _ in range(50)
        )
    )
    assert [r.status_code for r in responses] == [201] * 50
    assert len({r.json()["id"] for r in responses}) == 50


async def test_health_endpoints_and_offline_docs(gateway: Gateway) -> None:
    assert (await gateway.client.get("/healthz")).status_code == 200
    assert (await gateway.client.get("/readyz")).json() == {"status": "ready"}
    docs = await gateway.client.get("/docs")
    assert docs.status_code == 200
    assert "cdn" not in docs.text.lower()
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        assert f"/docs-assets/{asset}" in docs.text
        assert (await gateway.client.get(f"/docs-assets/{asset}")).status_code == 200
    spec = (await gateway.client.get("/openapi.json")).json()
    assert "PaymentCreate" in spec["components"]["schemas"]


async def test_docs_can_be_switched_off(database_url: str, tmp_path: Path) -> None:
    settings = gateway_settings(database_url, tmp_path, docs_enabled=False)
    app = create_app(settings, bank=FakeBank(), run_reconciler=False)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            for path in ("/docs", "/openapi.json", "/docs-assets/swagger-ui.css"):
                assert (await client.get(path)).status_code == 404, path
            assert (await client.get("/healthz")).status_code == 200
            paid = await client.post("/api/v1/payments", json=payment_body(), headers=MERCHANT_ONE)
            assert paid.status_code == 201


async def _age_payment(gw: Gateway, payment_id: str, hours: float) -> None:
    """Move a payment's creation into the past, as if that much time had gone by."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import update

    async with gw.app.state.services.uow.engine.begin() as connection:
        await connection.execute(
            update(payments)
            .where(payments.c.id == payment_id)
            .values(created_at=datetime.now(UTC) - timedelta(hours=hours))
        )


async def test_an_expired_idempotency_key_starts_a_new_payment(gateway: Gateway) -> None:
    headers = MERCHANT_ONE | {"Idempotency-Key": f"expiring-{uuid.uuid4()}"}
    first = await gateway.client.post("/api/v1/payments", json=payment_body(), headers=headers)
    await _age_payment(gateway, first.json()["id"], hours=25)

    again = await gateway.client.post("/api/v1/payments", json=payment_body(), headers=headers)

    assert again.status_code == 201
    assert "idempotent-replayed" not in again.headers
    assert again.json()["id"] != first.json()["id"]
    assert len(gateway.bank.deposits) == 2
    # The old payment itself is untouched and still readable.
    old = await gateway.client.get(f"/api/v1/payments/{first.json()['id']}", headers=MERCHANT_ONE)
    assert old.json()["status"] == "succeeded"


async def test_cleanup_releases_only_expired_keys(gateway: Gateway) -> None:
    old_key = {"Idempotency-Key": f"old-{uuid.uuid4()}"}
    new_key = {"Idempotency-Key": f"new-{uuid.uuid4()}"}
    old = await gateway.client.post(
        "/api/v1/payments", json=payment_body(), headers=MERCHANT_ONE | old_key
    )
    new = await gateway.client.post(
        "/api/v1/payments", json=payment_body(), headers=MERCHANT_ONE | new_key
    )
    await _age_payment(gateway, old.json()["id"], hours=25)

    released = await gateway.app.state.services.reconciler.release_expired_idempotency_keys()

    assert released >= 1
    async with gateway.app.state.services.uow.engine.connect() as connection:
        keys = dict(
            (
                await connection.execute(
                    select(payments.c.id, payments.c.idempotency_key).where(
                        payments.c.id.in_([old.json()["id"], new.json()["id"]])
                    )
                )
            ).all()
        )
    assert keys == {old.json()["id"]: None, new.json()["id"]: new_key["Idempotency-Key"]}


async def test_idempotency_keys_differing_only_in_case_or_accents_are_different(
    gateway: Gateway,
) -> None:
    # MySQL's default collations would treat these as equal; keys must compare byte for byte.
    suffix = uuid.uuid4().hex
    # Header values go as bytes: httpx would encode str ones as ASCII, and these are UTF-8.
    merchant_one = {name.encode(): value.encode() for name, value in MERCHANT_ONE.items()}
    ids = set()
    for key in (f"order-abc-{suffix}", f"ORDER-ABC-{suffix}", f"café-{suffix}", f"cafe-{suffix}"):
        response = await gateway.client.post(
            "/api/v1/payments",
            json=payment_body(),
            headers={**merchant_one, b"Idempotency-Key": key.encode()},
        )
        assert response.status_code == 201
        assert "idempotent-replayed" not in response.headers
        ids.add(response.json()["id"])
    assert len(ids) == 4
    assert len(gateway.bank.deposits) == 4


async def test_short_card_numbers_keep_no_bin_in_clear(gateway: Gateway) -> None:
    from payment_gateway.storage.tables import cards

    short = await gateway.client.post(
        "/api/v1/payments", json=payment_body("424242424242"), headers=MERCHANT_ONE
    )
    long = await gateway.client.post("/api/v1/payments", json=payment_body(), headers=MERCHANT_ONE)
    async with gateway.app.state.services.uow.engine.connect() as connection:
        bins = dict(
            (
                await connection.execute(
                    select(payments.c.id, cards.c.bin)
                    .join(cards, cards.c.id == payments.c.card_id)
                    .where(payments.c.id.in_([short.json()["id"], long.json()["id"]]))
                )
            ).all()
        )
    assert bins == {short.json()["id"]: None, long.json()["id"]: "424242"}
