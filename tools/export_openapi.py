"""Print the gateway's OpenAPI document as YAML (`make openapi` writes it to openapi.yaml)."""

from __future__ import annotations

import sys

import yaml
from payment_gateway.main import create_app


def openapi_yaml() -> str:
    return yaml.safe_dump(create_app().openapi(), sort_keys=False, allow_unicode=True)


if __name__ == "__main__":
    sys.stdout.write(openapi_yaml())
