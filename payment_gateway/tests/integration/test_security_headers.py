"""Every answer of the gateway tells caches not to keep it and browsers not to sniff it."""

from __future__ import annotations

import pytest

from .conftest import MERCHANT_ONE, Gateway, payment_body

NO_STORE = ("cache-control", "no-store")
NOSNIFF = ("x-content-type-options", "nosniff")


def assert_hardened(headers: object, what: str) -> None:
    for name, value in (NO_STORE, NOSNIFF):
        assert headers.get_list(name) == [value], what  # type: ignore[attr-defined]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_every_kind_of_answer_carries_the_headers(gateway: Gateway) -> None:
    client = gateway.client
    created = await client.post("/api/v1/payments", json=payment_body(), headers=MERCHANT_ONE)
    answers = {
        "201 payment": created,
        "200 read": await client.get(created.headers["location"], headers=MERCHANT_ONE),
        "401": await client.post("/api/v1/payments", json=payment_body()),
        "404": await client.get("/api/v1/payments/unknown", headers=MERCHANT_ONE),
        "422": await client.post("/api/v1/payments", json={}, headers=MERCHANT_ONE),
        "413": await client.post("/api/v1/payments", content=b"x" * 70_000, headers=MERCHANT_ONE),
        "415": await client.post(
            "/api/v1/payments",
            content=b"x",
            headers=MERCHANT_ONE | {"content-type": "text/plain"},
        ),
        "healthz": await client.get("/healthz"),
        "readyz": await client.get("/readyz"),
        "openapi": await client.get("/openapi.json"),
        "not found": await client.get("/no-such-route"),
        "docs": await client.get("/docs"),
    }
    expected = {"201 payment": 201, "401": 401, "404": 404, "not found": 404}
    expected |= {"422": 422, "413": 413, "415": 415}
    for what, response in answers.items():
        assert response.status_code == expected.get(what, 200), what
        assert_hardened(response.headers, what)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_swagger_ui_still_works_with_nosniff(gateway: Gateway) -> None:
    # nosniff makes a browser refuse a script or style served under another content type.
    for asset, content_type in (
        ("swagger-ui-bundle.js", "javascript"),
        ("swagger-ui.css", "text/css"),
    ):
        response = await gateway.client.get(f"/docs-assets/{asset}")
        assert response.status_code == 200
        assert content_type in response.headers["content-type"]
        assert_hardened(response.headers, asset)
