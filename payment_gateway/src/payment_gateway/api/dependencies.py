"""Request-scoped dependencies, as Annotated aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from payment_gateway.api.bearer import bearer_credentials
from payment_gateway.api.rate_limit import RateLimiter, client_address
from payment_gateway.bootstrap import Services
from payment_gateway.domain.merchant import Merchant


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
    limiter: RateLimiter | None = request.app.state.rate_limiter  # None: limits are off
    if limiter is None:
        return await services.merchants.authenticate(api_key)
    return await limiter.authenticate(services.merchants, api_key, client_address(request))


MerchantDep = Annotated[Merchant, Depends(authenticate)]


async def limit_by_address(request: Request) -> None:
    """For the routes a shopper's browser calls, with no API key: counted against its address."""
    limiter: RateLimiter | None = request.app.state.rate_limiter
    if limiter is not None:
        await limiter.check(limiter.per_address, client_address(request))


ShopperLimited = Depends(limit_by_address)


async def services_and_merchant(request: Request) -> tuple[Services, Merchant]:
    """For routes that read their request themselves (to authenticate before the body)."""
    services: Services = request.app.state.services
    return services, await authenticate_merchant(services, request, bearer_token(request))


def bearer_token(request: Request) -> str | None:
    """The credentials of ``Authorization: Bearer <token>``, read as HTTPBearer reads them."""
    return bearer_credentials(request.headers.get("authorization"))
