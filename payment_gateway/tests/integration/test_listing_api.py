"""GET /api/v1/payments end to end in-process, on real SQLite and real MariaDB.

Each test lists the payments of merchants of its own: the MariaDB database is shared by the
session's tests, whose payments belong to the demo merchants.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from payment_gateway.api.schemas import PaymentList
from payment_gateway.domain.card import CardSummary
from payment_gateway.domain.merchant import Merchant
from payment_gateway.domain.payment import Payment, PaymentStatus
from payment_gateway.service.ports import ListPosition, NewPayment, PaymentFilters, StoredCard
from payment_gateway.storage.database import create_engine
from payment_gateway.storage.repositories import listing_statement
from sqlalchemy import text
from sqlalchemy.dialects import mysql

from .conftest import Gateway, payment_body

# Card -> the status the fake bank's answer gives it.
CARDS = [
    ("4242424242424242", "succeeded"),
    ("4000000000000002", "failed"),
    ("4000000000009995", "processing"),
]


@dataclass
class Shop:
    headers: dict[str, str]
    merchant: Merchant


async def new_shop(gateway: Gateway) -> Shop:
    created = await gateway.app.state.services.merchants.create(f"shop-{uuid.uuid4().hex[:12]}")
    return Shop({"Authorization": f"Bearer {created.api_key}"}, created.merchant)


@pytest.fixture
async def shop(gateway: Gateway) -> Shop:
    return await new_shop(gateway)


@pytest.fixture
async def history(gateway: Gateway, shop: Shop) -> list[dict[str, Any]]:
    """25 payments of the shop, oldest first: statuses cycle, references cycle over 5."""
    created = []
    for n in range(25):
        number, _ = CARDS[n % 3]
        response = await gateway.client.post(
            "/api/v1/payments",
            json=payment_body(number, reference=f"order-{n % 5}", amount=100 + n),
            headers=shop.headers,
        )
        assert response.status_code == 201
        created.append(response.json())
    return created


async def listing(gateway: Gateway, shop: Shop, **query: str | int) -> dict[str, Any]:
    response = await gateway.client.get("/api/v1/payments", params=query, headers=shop.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    PaymentList.model_validate(body)  # the documented shape
    return body


def ids(items: list[dict[str, Any]]) -> list[str]:
    return [item["id"] for item in items]


async def test_25_payments_paged_by_10_older_then_newer(
    gateway: Gateway, shop: Shop, history: list[dict[str, Any]]
) -> None:
    newest_first = history[::-1]

    first = await listing(gateway, shop, limit=10)
    second = await listing(gateway, shop, limit=10, starting_after=first["data"][-1]["id"])
    third = await listing(gateway, shop, limit=10, starting_after=second["data"][-1]["id"])

    assert first["object"] == "list"
    assert [ids(page["data"]) for page in (first, second, third)] == [
        ids(newest_first[:10]),
        ids(newest_first[10:20]),
        ids(newest_first[20:]),
    ]
    assert [page["has_more"] for page in (first, second, third)] == [True, True, False]

    back = await listing(gateway, shop, limit=10, ending_before=third["data"][0]["id"])
    front = await listing(gateway, shop, limit=10, ending_before=back["data"][0]["id"])
    assert ids(back["data"]) == ids(newest_first[10:20])
    assert ids(front["data"]) == ids(newest_first[:10])
    assert (back["has_more"], front["has_more"]) == (True, False)


async def test_each_listed_payment_reads_as_get_shows_it(
    gateway: Gateway, shop: Shop, history: list[dict[str, Any]]
) -> None:
    page = await listing(gateway, shop, limit=3)
    for item in page["data"]:
        read = await gateway.client.get(f"/api/v1/payments/{item['id']}", headers=shop.headers)
        assert read.json() == item
    assert "4242424242424242" not in str(page)


async def test_default_limit_is_10(
    gateway: Gateway, shop: Shop, history: list[dict[str, Any]]
) -> None:
    page = await listing(gateway, shop)
    assert len(page["data"]) == 10
    assert page["has_more"]
    everything = await listing(gateway, shop, limit=100)
    assert ids(everything["data"]) == ids(history[::-1])
    assert not everything["has_more"]


@pytest.mark.parametrize(("number", "status"), CARDS)
async def test_status_filter(
    gateway: Gateway, shop: Shop, history: list[dict[str, Any]], number: str, status: str
) -> None:
    page = await listing(gateway, shop, status=status, limit=100)

    expected = [p for p in history if p["status"] == status][::-1]
    assert len(expected) in (8, 9)
    assert ids(page["data"]) == ids(expected)


async def test_status_and_reference_filters_page_together(
    gateway: Gateway, shop: Shop, history: list[dict[str, Any]]
) -> None:
    query = {"status": "succeeded", "reference": "order-0"}
    first = await listing(gateway, shop, limit=2, **query)
    rest = await listing(gateway, shop, limit=2, starting_after=first["data"][-1]["id"], **query)

    # n % 3 == 0 and n % 5 == 0: payments 15 and 0 (newest first), so one page of two.
    assert ids(first["data"]) == [history[15]["id"], history[0]["id"]]
    assert not first["has_more"]
    assert rest == {"object": "list", "data": [], "has_more": False}


async def test_created_bounds_in_rfc3339_and_unix_seconds(
    gateway: Gateway, shop: Shop, history: list[dict[str, Any]]
) -> None:
    at = history[10]["created_at"]  # RFC 3339 with microseconds, "Z"

    inclusive = await listing(gateway, shop, limit=100, **{"created[gte]": at})
    exclusive = await listing(gateway, shop, limit=100, **{"created[gt]": at})
    assert ids(inclusive["data"]) == ids(history[10:][::-1])
    assert ids(exclusive["data"]) == ids(history[11:][::-1])

    upto = await listing(gateway, shop, limit=100, **{"created[lte]": at})
    before = await listing(gateway, shop, limit=100, **{"created[lt]": at})
    assert ids(upto["data"]) == ids(history[:11][::-1])
    assert ids(before["data"]) == ids(history[:10][::-1])

    # The same instant with another offset is the same bound.
    instant = datetime.fromisoformat(at.replace("Z", "+00:00"))
    shifted = instant.astimezone(timezone(timedelta(hours=2))).isoformat()
    assert ids((await listing(gateway, shop, limit=100, **{"created[gte]": shifted}))["data"]) == (
        ids(inclusive["data"])
    )

    # Unix seconds: the whole second the first payment was made in, up to a day later.
    first_second = int(datetime.fromisoformat(history[0]["created_at"]).timestamp())
    window = {"created[gte]": first_second, "created[lt]": first_second + 86400}
    assert ids((await listing(gateway, shop, limit=100, **window))["data"]) == ids(history[::-1])
    future = {"created[gt]": first_second + 86400}
    assert (await listing(gateway, shop, **future))["data"] == []


async def test_another_merchant_sees_none_and_cannot_page_from_them(
    gateway: Gateway, shop: Shop, history: list[dict[str, Any]]
) -> None:
    other = await new_shop(gateway)
    assert await listing(gateway, other) == {"object": "list", "data": [], "has_more": False}
    assert (await listing(gateway, other, reference="order-1"))["data"] == []

    theirs = history[5]["id"]
    for parameter in ("starting_after", "ending_before"):
        foreign = await gateway.client.get(
            "/api/v1/payments", params={parameter: theirs}, headers=other.headers
        )
        unknown = await gateway.client.get(
            "/api/v1/payments", params={parameter: str(uuid.uuid4())}, headers=other.headers
        )
        assert foreign.status_code == unknown.status_code == 404
        assert foreign.headers["content-type"] == "application/problem+json"
        assert foreign.json()["errors"] == unknown.json()["errors"]
        assert foreign.json()["errors"] == [{"field": parameter, "message": "no such payment"}]


async def test_without_a_key_nothing_is_listed(gateway: Gateway) -> None:
    response = await gateway.client.get("/api/v1/payments", params={"limit": 0})
    assert response.status_code == 401  # authentication comes before the query is read
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    ("query", "fields"),
    [
        ("limit=0", ["limit"]),
        ("limit=101", ["limit"]),
        ("limit=abc", ["limit"]),
        ("limit=", ["limit"]),
        ("status=refunded", ["status"]),
        ("reference=" + "r" * 65, ["reference"]),
        ("starting_after=", ["starting_after"]),
        ("ending_before=" + "x" * 65, ["ending_before"]),
        ("starting_after=a&ending_before=b", ["starting_after", "ending_before"]),
        ("created[gte]=yesterday", ["created[gte]"]),
        ("created[gt]=2026-13-01T00:00:00Z", ["created[gt]"]),
        ("created[lte]=2026-02-30T00:00:00Z", ["created[lte]"]),
        ("created[lt]=2026-01-01T00:00:00", ["created[lt]"]),  # no offset: ambiguous
        ("created[gte]=2026-01-01", ["created[gte]"]),
        ("created[gte]=-5", ["created[gte]"]),
        ("created[gte]=0001-01-01T00:00:00%2B01:00", ["created[gte]"]),  # before 0001 in UTC
        ("created[lt]=99999999999999", ["created[lt]"]),
        ("created=1700000000", ["created"]),
        ("page=2", ["page"]),
        ("limit=0&status=nope&created[gt]=x", ["limit", "status", "created[gt]"]),
    ],
)
async def test_invalid_parameters_are_422_naming_each(
    gateway: Gateway, shop: Shop, query: str, fields: list[str]
) -> None:
    response = await gateway.client.get(f"/api/v1/payments?{query}", headers=shop.headers)

    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 422
    assert sorted(error["field"] for error in problem["errors"]) == sorted(fields)


async def test_sql_listing_orders_payments_made_at_the_same_instant_by_id(
    gateway: Gateway, shop: Shop
) -> None:
    """Ties on created_at (a batch committed together) still page without loss or repeat."""
    at = datetime(2031, 5, 1, 12, 0, tzinfo=UTC)
    made = [twin(shop.merchant, at, f"0000000{n}-tie-{uuid.uuid4()}"[:36]) for n in range(5)]
    uow_factory = gateway.app.state.services.uow
    async with uow_factory() as uow:
        await uow.payments.add_many(made)
        await uow.commit()
    by_id = sorted((entry.payment.id for entry in made), reverse=True)

    async with uow_factory(read_only=True) as uow:
        rows = uow.payments
        newest = await rows.list_page(shop.merchant.id, PaymentFilters(), 2)
        after = await rows.list_page(
            shop.merchant.id, PaymentFilters(), 10, older_than=ListPosition(at, by_id[1])
        )
        before = await rows.list_page(
            shop.merchant.id, PaymentFilters(), 10, newer_than=ListPosition(at, by_id[3])
        )
    assert [p.id for p in newest] == by_id[:2]
    assert [p.id for p in after] == by_id[2:]
    assert [p.id for p in before] == [by_id[2], by_id[1], by_id[0]]  # nearest first


def twin(merchant: Merchant, at: datetime, payment_id: str) -> NewPayment:
    payment = Payment(
        id=payment_id,
        merchant_id=merchant.id,
        status=PaymentStatus.SUCCEEDED,
        amount=500,
        currency="EUR",
        reference="batch",
        card=CardSummary("4242", "visa", 12, 2042),
        created_at=at,
        updated_at=at,
    )
    card = StoredCard(str(uuid.uuid4()), b"ciphertext", None, None)
    return NewPayment(payment, card, None, at)


async def test_a_method_the_path_lacks_is_405_allowing_both_routes_of_the_path(
    gateway: Gateway, shop: Shop
) -> None:
    # GET (listing) and POST (create) are two routes on one path: Allow names them both.
    response = await gateway.client.delete("/api/v1/payments", headers=shop.headers)
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.mariadb
@pytest.mark.parametrize(
    ("filters", "index", "parts"),
    [
        (PaymentFilters(), "ix_payments_merchant_id_created_at", ["merchant_id", "created_at"]),
        (
            PaymentFilters(status=PaymentStatus.FAILED),
            "ix_payments_merchant_id_status_created_at_id",
            ["merchant_id", "status", "created_at"],
        ),
        (
            PaymentFilters(reference="order-1", status=PaymentStatus.FAILED),
            "ix_payments_merchant_id_reference_created_at_id",
            ["merchant_id", "reference", "created_at"],
        ),
    ],
)
async def test_a_page_past_a_cursor_is_an_index_range_bounded_by_the_cursor(
    mysql_url: str, filters: PaymentFilters, index: str, parts: list[str]
) -> None:
    """What MariaDB does with the listing's statement: a range of the merchant's index that
    starts at the cursor (not the merchant's rows read from the newest down), with no sort."""
    cursor = ListPosition(datetime(2031, 1, 1, tzinfo=UTC), "01965f2e-1c3a-7d4e-9b1a-2f0c3e4d5a6b")
    statement = listing_statement("some-merchant", filters, 11, cursor, None)
    sql = str(statement.compile(dialect=mysql.dialect(), compile_kwargs={"literal_binds": True}))
    engine = create_engine(mysql_url, pool_size=1)
    try:
        async with engine.connect() as connection:
            explained = await connection.execute(text("EXPLAIN FORMAT=JSON " + sql))
            plan = json.loads(explained.scalar_one())
    finally:
        await engine.dispose()

    table = plan["query_block"]["nested_loop"][0]["table"]
    assert table["table_name"] == "payments"
    assert table["key"] == index
    assert table["access_type"] == "range"
    assert table["used_key_parts"] == parts
    assert "filesort" not in json.dumps(plan)
