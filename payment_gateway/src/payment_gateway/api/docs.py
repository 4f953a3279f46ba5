"""Swagger UI served from packaged assets (works offline), and the OpenAPI document."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse

from payment_gateway.api.checkout_schemas import CheckoutSessionCreate
from payment_gateway.api.schemas import CaptureCreate, PaymentCreate, RefundCreate
from payment_gateway.api.webhook_schemas import WebhookEndpointCreate, WebhookEndpointUpdate

_ASSETS = Path(fastapi_offline.__file__).parent / "static"
ASSETS_PATH = "/docs-assets"


def install_docs(app: FastAPI) -> None:
    app.mount(ASSETS_PATH, StaticFiles(directory=_ASSETS), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_PATH}/favicon.png",
        )

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            # The routes that take a body read it themselves (so authentication runs first);
            # publish the bodies' schemas here so clients and fuzzers still see them.
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            bodies = (
                PaymentCreate,
                CaptureCreate,
                RefundCreate,
                WebhookEndpointCreate,
                CheckoutSessionCreate,
                WebhookEndpointUpdate,
            )
            for model in bodies:
                body = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(body.pop("$defs", {}))
                components[model.__name__] = body
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
