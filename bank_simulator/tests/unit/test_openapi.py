"""The simulator documents its own contract."""

from __future__ import annotations

from ..conftest import BankClient


async def test_openapi_describes_the_deposit_contract(client: BankClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    deposit = schema["paths"]["/api/v1/deposit"]["post"]
    body = deposit["requestBody"]["content"]["application/json"]["schema"]
    assert set(body["required"]) == {"reference", "card", "amount", "currency"}
    assert body["additionalProperties"] is False
    assert body["properties"]["card"]["properties"]["number"]["pattern"]
    assert {"200", "201", "409", "422", "503"} <= deposit["responses"].keys()
    assert "/api/v1/deposits/{reference}" in schema["paths"]
    assert "$defs" not in str(schema)


def test_module_level_app_exists() -> None:
    from bank_simulator.main import app

    assert app.state.settings.max_transactions >= 1
