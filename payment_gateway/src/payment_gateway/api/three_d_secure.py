"""Where the bank sends a shopper's browser back after a 3-D Secure challenge.

Nothing the browser brings is trusted: the route only names the payment, and the gateway
asks the bank for the authentication's result itself (docs/design.md, 3-D Secure).
"""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import RedirectResponse

from payment_gateway.api.dependencies import ServicesDep, ShopperLimited
from payment_gateway.domain.urls import with_query
from payment_gateway.service.payments import THREE_D_SECURE_RETURN_PATH

three_d_secure_router = APIRouter(include_in_schema=False, dependencies=[ShopperLimited])

# For the browser: no cached copy, and the merchant's page learns nothing of where it came from.
_BROWSER_HEADERS = {"Referrer-Policy": "no-referrer"}


@three_d_secure_router.get(THREE_D_SECURE_RETURN_PATH + "{payment_id}")
async def three_d_secure_return(payment_id: str, services: ServicesDep) -> Response:
    """Finish the payment (server-side), then send the shopper on to the merchant's page."""
    payment = None
    if len(payment_id) <= 64:
        payment = await services.payments.finish_authentication(payment_id)
    if payment is None or payment.three_d_secure is None:
        return Response(
            "No payment is waiting here.\n",
            404,
            headers=_BROWSER_HEADERS,
            media_type="text/plain; charset=utf-8",
        )
    target = with_query(payment.three_d_secure.return_url, payment_id=payment.id)
    return RedirectResponse(target, 303, headers=_BROWSER_HEADERS)
