"""The simulator documents its own contract."""

from __future__ import annotations

import pytest

from ..conftest import BankClient


async def test_openapi_describes_the_deposit_contract(client: BankClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    deposit = schema["paths"]["/api/v1/deposit"]["post"]
    body = deposit["requestBody"]["content"]["application/json"]["schema"]
    assert set(body["required"]) == {"reference", "card", "amount", "currency"}
    assert body["additionalProperties"] is False
    assert body["properties"]["card"]["properties"]["number"]["pattern"]
    assert body["properties"]["capture"]["type"] == "boolean"
    assert body["properties"]["capture"]["default"] is True
    assert {"200", "201", "409", "422", "503"} <= deposit["responses"].keys()
    assert "/api/v1/deposits/{reference}" in schema["paths"]
    transaction = schema["components"]["schemas"]["TransactionOut"]
    assert {"captured_amount", "refunded_amount"} <= transaction["properties"].keys()
    assert "authorized" in transaction["properties"]["status"]["enum"]
    assert "$defs" not in str(schema)


@pytest.mark.parametrize(
    ("collection", "required"),
    [
        ("captures", {"reference", "deposit_reference", "amount"}),
        ("voids", {"reference", "deposit_reference"}),
        ("refunds", {"reference", "deposit_reference", "amount"}),
    ],
)
async def test_openapi_describes_each_operation(
    client: BankClient, collection: str, required: set[str]
) -> None:
    schema = (await client.get("/openapi.json")).json()
    create = schema["paths"][f"/api/v1/{collection}"]["post"]
    body = create["requestBody"]["content"]["application/json"]["schema"]
    assert set(body["required"]) == required
    assert body["additionalProperties"] is False
    assert {"200", "201", "404", "409", "422", "503"} <= create["responses"].keys()
    inquiry = schema["paths"][f"/api/v1/{collection}/{{reference}}"]["get"]
    assert {"200", "404"} <= inquiry["responses"].keys()
    ids = [op["operationId"] for path in schema["paths"].values() for op in path.values()]
    assert len(ids) == len(set(ids))


def test_module_level_app_exists() -> None:
    from bank_simulator.main import app

    assert app.state.settings.max_transactions >= 1


async def test_openapi_describes_three_d_secure(client: BankClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    create = schema["paths"]["/api/v1/3ds/authentications"]["post"]
    body = create["requestBody"]["content"]["application/json"]["schema"]
    assert set(body["required"]) == {"reference", "card", "amount", "currency", "return_url"}
    assert body["additionalProperties"] is False
    assert set(body["properties"]["card"]["properties"]) == {"number", "expiry", "holder_name"}
    assert body["properties"]["return_url"]["format"] == "uri"
    assert {"200", "201", "409", "413", "415", "422", "503"} <= create["responses"].keys()
    inquiry = schema["paths"]["/api/v1/3ds/authentications/{reference}"]["get"]
    assert {"200", "404"} <= inquiry["responses"].keys()
    out = schema["components"]["schemas"]["AuthenticationOut"]["properties"]
    assert set(out) == {
        "id",
        "reference",
        "status",
        "flow",
        "challenge_url",
        "eci",
        "version",
        "failure_reason",
    }
    deposit = schema["paths"]["/api/v1/deposit"]["post"]["requestBody"]["content"]
    three_d_secure = deposit["application/json"]["schema"]["properties"]["three_d_secure"]
    assert "authentication_id" in str(three_d_secure)
    # The challenge page is for browsers: not part of the API document.
    assert not [path for path in schema["paths"] if path.startswith("/3ds/")]
