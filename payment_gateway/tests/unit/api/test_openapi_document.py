"""openapi.yaml at the repo root is generated from the app: it must not drift."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from payment_gateway.main import create_app

OPENAPI_YAML = Path(__file__).resolve().parents[4] / "openapi.yaml"


def test_committed_openapi_yaml_matches_the_app() -> None:
    committed = yaml.safe_load(OPENAPI_YAML.read_text())
    assert committed == create_app().openapi(), "openapi.yaml is stale: run `make openapi`"


def test_openapi_documents_the_contract() -> None:
    spec = create_app().openapi()
    create = spec["paths"]["/api/v1/payments"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/PaymentCreate"
    }
    assert {"201", "401", "409", "413", "415", "422", "429"} <= create["responses"].keys()
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    read = spec["paths"]["/api/v1/payments/{payment_id}"]["get"]
    assert {"404", "429"} <= read["responses"].keys()
    for operation in (create, read):
        assert {"Retry-After", "RateLimit-Policy", "RateLimit"} <= (
            operation["responses"]["429"]["headers"].keys()
        )


def test_every_route_reading_a_body_documents_its_refusal() -> None:
    """Any body over 64 KiB draws 413 and one not JSON 415, before the route sees it."""
    spec = create_app().openapi()
    undocumented = [
        f"{method.upper()} {path}"
        for path, operations in spec["paths"].items()
        for method, operation in operations.items()
        if "requestBody" in operation and not {"413", "415"} <= operation["responses"].keys()
    ]
    assert undocumented == []


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def test_every_schema_reference_resolves() -> None:
    """A body a route reads itself is named by $ref: its schema must be published too."""
    spec = create_app().openapi()
    schemas = spec["components"]["schemas"]
    dangling = sorted(
        {ref for ref in _refs(spec) if ref.removeprefix("#/components/schemas/") not in schemas}
    )
    assert dangling == []


def test_the_webhook_bodies_are_documented_with_examples() -> None:
    schemas = create_app().openapi()["components"]["schemas"]
    for name in ("WebhookEndpointCreate", "WebhookEndpointUpdate"):
        assert schemas[name]["examples"], name
    create = schemas["WebhookEndpointCreate"]
    assert create["required"] == ["url"]
    assert create["additionalProperties"] is False


def test_checkout_sessions_and_3_d_secure_are_in_the_contract() -> None:
    spec = create_app().openapi()
    sessions = "/api/v1/checkout-sessions"
    assert "post" in spec["paths"][sessions]
    assert "get" in spec["paths"][f"{sessions}/{{session_id}}"]
    assert "post" in spec["paths"][f"{sessions}/{{session_id}}/expire"]
    schemas = spec["components"]["schemas"]
    assert "three_d_secure" in schemas["PaymentCreate"]["properties"]
    assert {"three_d_secure", "next_action"} <= schemas["PaymentOut"]["properties"].keys()
    assert "requires_action" in schemas["PaymentStatus"]["enum"]
    # The pages are for browsers, not for the API's clients.
    assert not [path for path in spec["paths"] if path.startswith(("/checkout/", "/3ds/"))]
