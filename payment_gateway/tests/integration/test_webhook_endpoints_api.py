"""Webhook endpoints through the API, on real SQLite and MariaDB: register, read, change,
rotate, delete; the secret shown once and stored only encrypted; URLs checked (SSRF)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fakes import FakeBank
from payment_gateway.bootstrap import Services
from payment_gateway.main import create_app
from payment_gateway.storage.tables import webhook_endpoints
from sqlalchemy import select

from .conftest import MERCHANT_TWO, Gateway, gateway_settings

ENDPOINTS = "/api/v1/webhook-endpoints"
RECEIVER = "http://127.0.0.1:9000/"  # never called: these tests send nothing


@pytest.fixture
async def merchant(gateway: Gateway) -> dict[str, str]:
    """A merchant of this test's own: MariaDB's database is shared by the session's tests."""
    services: Services = gateway.app.state.services
    issued = await services.merchants.create(f"hooks-{uuid.uuid4().hex[:12]}")
    return {"Authorization": f"Bearer {issued.api_key}"}


def field_names(response: httpx.Response) -> list[str]:
    return [error["field"] for error in response.json()["errors"]]


async def test_an_endpoint_is_registered_with_a_secret_shown_once(
    gateway: Gateway, merchant: dict[str, str]
) -> None:
    created = await gateway.client.post(
        ENDPOINTS,
        json={"url": "http://127.0.0.1:9000/hooks", "enabled_events": ["payment.succeeded"]},
        headers=merchant,
    )
    assert created.status_code == 201
    endpoint = created.json()
    assert endpoint["id"].startswith("we_")
    assert created.headers["location"] == f"{ENDPOINTS}/{endpoint['id']}"
    assert endpoint["secret"].startswith("whsec_")
    assert (endpoint["status"], endpoint["enabled_events"]) == ("enabled", ["payment.succeeded"])

    read = await gateway.client.get(f"{ENDPOINTS}/{endpoint['id']}", headers=merchant)
    assert read.status_code == 200
    assert "secret" not in read.json()
    listed = await gateway.client.get(ENDPOINTS, headers=merchant)
    assert [e["id"] for e in listed.json()["data"]] == [endpoint["id"]]
    assert all("secret" not in e for e in listed.json()["data"])

    # Stored encrypted: the secret's text is nowhere in the row.
    services: Services = gateway.app.state.services
    async with services.uow.engine.connect() as connection:
        row = (
            await connection.execute(
                select(webhook_endpoints).where(webhook_endpoints.c.id == endpoint["id"])
            )
        ).one()
    assert endpoint["secret"].encode() not in b"".join(
        value if isinstance(value, bytes) else str(value).encode() for value in row
    )
    assert services.vault.decrypt(row.secret_encrypted) == endpoint["secret"]


async def test_all_events_by_default_and_unknown_types_refused(
    gateway: Gateway, merchant: dict[str, str]
) -> None:
    created = await gateway.client.post(ENDPOINTS, json={"url": RECEIVER}, headers=merchant)
    assert created.json()["enabled_events"] == ["*"]
    for body, field in (
        (
            {"url": "http://127.0.0.1:9000/", "enabled_events": ["payment.exploded"]},
            "enabled_events",
        ),
        ({"url": RECEIVER, "enabled_events": []}, "enabled_events"),
        ({"url": "ftp://127.0.0.1/"}, "url"),
        ({"url": "not a url"}, "url"),
        ({}, "url"),
        ({"url": "http://127.0.0.1:9000/", "colour": "red"}, "colour"),
    ):
        response = await gateway.client.post(ENDPOINTS, json=body, headers=merchant)
        assert response.status_code == 422, body
        assert field in field_names(response), body


async def test_an_endpoint_is_changed_disabled_and_deleted(
    gateway: Gateway, merchant: dict[str, str]
) -> None:
    created = (
        await gateway.client.post(
            ENDPOINTS, json={"url": "http://127.0.0.1:9000/a"}, headers=merchant
        )
    ).json()
    path = f"{ENDPOINTS}/{created['id']}"
    changed = await gateway.client.patch(
        path,
        json={"url": "http://127.0.0.1:9000/b", "enabled_events": ["refund.failed"]},
        headers=merchant,
    )
    assert changed.status_code == 200
    assert (changed.json()["url"], changed.json()["enabled_events"]) == (
        "http://127.0.0.1:9000/b",
        ["refund.failed"],
    )
    disabled = await gateway.client.patch(path, json={"disabled": True}, headers=merchant)
    assert (disabled.json()["status"], disabled.json()["disabled_reason"]) == (
        "disabled",
        "requested_by_merchant",
    )
    enabled = await gateway.client.patch(path, json={"disabled": False}, headers=merchant)
    assert (enabled.json()["status"], enabled.json()["disabled_reason"]) == ("enabled", None)
    bad = await gateway.client.patch(path, json={"disabled": "yes"}, headers=merchant)
    assert bad.status_code == 422
    assert field_names(bad) == ["disabled"]

    assert (await gateway.client.delete(path, headers=merchant)).status_code == 204
    assert (await gateway.client.get(path, headers=merchant)).status_code == 404
    assert (await gateway.client.delete(path, headers=merchant)).status_code == 404


async def test_rotation_gives_a_new_secret(gateway: Gateway, merchant: dict[str, str]) -> None:
    created = (
        await gateway.client.post(ENDPOINTS, json={"url": RECEIVER}, headers=merchant)
    ).json()
    rotated = await gateway.client.post(
        f"{ENDPOINTS}/{created['id']}/rotate-secret", headers=merchant
    )
    assert rotated.status_code == 200
    assert rotated.json()["secret"].startswith("whsec_")
    assert rotated.json()["secret"] != created["secret"]


async def test_another_merchants_endpoint_does_not_exist(
    gateway: Gateway, merchant: dict[str, str]
) -> None:
    created = (
        await gateway.client.post(ENDPOINTS, json={"url": RECEIVER}, headers=merchant)
    ).json()
    path = f"{ENDPOINTS}/{created['id']}"
    for method, url in (
        ("GET", path),
        ("PATCH", path),
        ("DELETE", path),
        ("POST", f"{path}/rotate-secret"),
        ("GET", f"{path}/deliveries"),
    ):
        kwargs: dict[str, object] = {"json": {"disabled": True}} if method == "PATCH" else {}
        response = await gateway.client.request(method, url, headers=MERCHANT_TWO, **kwargs)  # type: ignore[arg-type]
        assert response.status_code == 404, (method, url)
    assert (await gateway.client.get(path, headers=merchant)).json()["status"] == "enabled"
    listed = await gateway.client.get(ENDPOINTS, headers=MERCHANT_TWO)
    assert created["id"] not in [e["id"] for e in listed.json()["data"]]


async def test_a_merchant_has_at_most_sixteen_endpoints(
    gateway: Gateway, merchant: dict[str, str]
) -> None:
    for number in range(16):
        response = await gateway.client.post(
            ENDPOINTS, json={"url": f"http://127.0.0.1:9000/{number}"}, headers=merchant
        )
        assert response.status_code == 201
    over = await gateway.client.post(
        ENDPOINTS, json={"url": "http://127.0.0.1:9000/17"}, headers=merchant
    )
    assert over.status_code == 422


@pytest.fixture
async def guarded(database_url: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """A gateway that refuses private webhook URLs, as production does."""
    settings = gateway_settings(database_url, tmp_path, webhook_allow_private_urls=False)
    app = create_app(settings, bank=FakeBank(), run_reconciler=False)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            issued = await app.state.services.merchants.create(f"ssrf-{uuid.uuid4().hex[:12]}")
            client.headers["Authorization"] = f"Bearer {issued.api_key}"
            yield client


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/hooks",  # plain http
        "https://127.0.0.1/hooks",
        "https://localhost/hooks",
        "https://10.0.0.7/hooks",
        "https://192.168.1.1/hooks",
        "https://169.254.169.254/latest/meta-data/",  # cloud metadata
        "https://[::1]/hooks",
        "https://[::ffff:127.0.0.1]/hooks",
        "https://user:password@example.com/hooks",
    ],
)
async def test_private_and_plain_http_urls_are_refused(
    guarded: httpx.AsyncClient, url: str
) -> None:
    response = await guarded.post(ENDPOINTS, json={"url": url})
    assert response.status_code == 422, response.text
    assert field_names(response) == ["url"]
    assert (await guarded.get(ENDPOINTS)).json()["data"] == []


async def test_a_private_url_is_refused_on_change_too(guarded: httpx.AsyncClient) -> None:
    services_url = "https://127.0.0.1/hooks"
    response = await guarded.patch(f"{ENDPOINTS}/we_unknown", json={"url": services_url})
    assert response.status_code == 422  # checked before anything is looked up
    assert field_names(response) == ["url"]
