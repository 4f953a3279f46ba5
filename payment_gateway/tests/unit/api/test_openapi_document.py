"""openapi.yaml at the repo root is generated from the app: it must not drift."""

from __future__ import annotations

from pathlib import Path

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
