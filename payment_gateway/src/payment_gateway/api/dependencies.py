"""Request-scoped dependencies, as Annotated aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param

from payment_gateway.bootstrap import Services
from payment_gateway.domain.merchant import Merchant


async def get_services(request: Request) -> Services:
    # async on purpose: FastAPI runs a plain `def` dependency in a worker thread per request.
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]

_bearer = HTTPBearer(auto_error=False, description="The merchant's API key.")


async def authenticate(
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Merchant:
    return await services.merchants.authenticate(credentials.credentials if credentials else None)


MerchantDep = Annotated[Merchant, Depends(authenticate)]


def bearer_token(request: Request) -> str | None:
    """The credentials of ``Authorization: Bearer <token>``, read as HTTPBearer reads them."""
    scheme, credentials = get_authorization_scheme_param(request.headers.get("authorization"))
    return credentials if scheme.lower() == "bearer" and credentials else None
