"""Where the bank sends a shopper's browser back after a 3-D Secure challenge.

Nothing the browser brings is trusted: the route only names the payment, and the gateway
asks the bank for the authentication's result itself (docs/design.md, 3-D Secure).
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import HTMLResponse

from payment_gateway.api.dependencies import ServicesDep, ShopperLimited
from payment_gateway.api.html_pages import message_page
from payment_gateway.domain.urls import with_query
from payment_gateway.service.payments import THREE_D_SECURE_RETURN_PATH

three_d_secure_router = APIRouter(include_in_schema=False, dependencies=[ShopperLimited])


@three_d_secure_router.get(THREE_D_SECURE_RETURN_PATH + "{payment_id}")
async def three_d_secure_return(payment_id: str, services: ServicesDep) -> HTMLResponse:
    """Finish the payment (server-side), then send the shopper on to the merchant's page.

    A page that goes on by script (with a link for a browser without one), not a 303: the
    browser comes here from the bank page's form post, and browsers hold every redirect
    after a post to that page's CSP form-action, which names only this gateway.
    """
    payment = None
    if len(payment_id) <= 64:
        payment = await services.payments.finish_authentication(payment_id)
    if payment is None or payment.three_d_secure is None:
        return message_page(
            404,
            "No payment is waiting here",
            "The link is not valid. Go back to the shop to start again.",
        )
    target = with_query(payment.three_d_secure.return_url, payment_id=payment.id)
    return message_page(
        200,
        "Returning to the shop",
        "Your bank has answered. Taking you back to the shop.",
        link=(target, "Continue to the shop"),
        go_on=True,
    )
