"""Request-scoped dependencies, as Annotated aliases."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param

from payment_gateway.api.rate_limit import RateLimiter, client_address
from payment_gateway.domain.merchant import Merchant
from payment_gateway.service.merchants import MerchantService
from payment_gateway.service.payments import PaymentService
from payment_gateway.storage.unit_of_work import SqlUnitOfWorkFactory


@dataclass(frozen=True, slots=True)
class Services:
    """Everything the routes use, wired once by the app factory."""

    payments: PaymentService
    merchants: MerchantService
    uow: SqlUnitOfWorkFactory
    rate_limiter: RateLimiter | None = None  # None: RATE_LIMIT_ENABLED=false


async def get_services(request: Request) -> Services:
    # async on purpose: FastAPI runs a plain `def` dependency in a worker thread per request.
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]

_bearer = HTTPBearer(auto_error=False, description="The merchant's API key.")


async def authenticate(
    request: Request,
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Merchant:
    api_key = credentials.credentials if credentials else None
    return await authenticate_merchant(services, request, api_key)


async def authenticate_merchant(
    services: Services, request: Request, api_key: str | None
) -> Merchant:
    """The key's merchant, within its rate limit (a request without a valid key counts
    against its client address); every merchant route authenticates through here."""
    if services.rate_limiter is None:
        return await services.merchants.authenticate(api_key)
    return await services.rate_limiter.authenticate(
        services.merchants, api_key, client_address(request)
    )


MerchantDep = Annotated[Merchant, Depends(authenticate)]


def bearer_token(request: Request) -> str | None:
    """The credentials of ``Authorization: Bearer <token>``, read as HTTPBearer reads them."""
    scheme, credentials = get_authorization_scheme_param(request.headers.get("authorization"))
    return credentials if scheme.lower() == "bearer" and credentials else None
