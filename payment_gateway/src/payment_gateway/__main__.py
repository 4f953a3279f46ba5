"""Operator commands: `python -m payment_gateway <command>`.

migrate                      apply database migrations (what AUTO_MIGRATE does at start)
merchants create NAME        create a merchant; prints its API key once
merchants add-key NAME       issue another key for a merchant (for rotation)
merchants list               list keys by prefix (keys themselves are never stored)
merchants revoke PREFIX      revoke the key(s) with that prefix
rotate-card-keys             re-encrypt stored cards under the newest CARD_ENCRYPTION_KEYS key
checkout create MERCHANT     open a hosted payment page for MERCHANT; prints its URL
  [--amount 1000] [--currency EUR] [--reference R] [--success-url U] [--cancel-url U]
                             (the demo merchants are seeded first where DEMO_MERCHANTS allows)
webhooks listen --secret S   receive webhooks locally, verify each, print one line per event
  [--port 9000] [--host 127.0.0.1] [--json]   (--secret again for each secret during a rotation;
                             needs no database and no gateway settings)
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import structlog
from pydantic import ValidationError

from payment_gateway import audit
from payment_gateway.bootstrap import Services, services_for
from payment_gateway.config import Settings
from payment_gateway.logging_setup import configure_logging
from payment_gateway.service.errors import GatewayError
from payment_gateway.service.merchants import MerchantService
from payment_gateway.storage.database import create_engine
from payment_gateway.storage.key_checks import KeyMismatch
from payment_gateway.storage.migrate import migrate
from payment_gateway.storage.rotation import rotate_card_keys


async def _migrate(settings: Settings) -> int:
    engine = create_engine(settings.effective_database_url, pool_size=1)
    try:
        await migrate(engine)
    finally:
        await engine.dispose()
    print("migrations applied")
    return 0


async def _rotate_card_keys(settings: Settings, batch_size: int) -> int:
    async with services_for(settings, pool_size=2) as services:
        rotated = await rotate_card_keys(services.uow.engine, services.vault, batch_size=batch_size)
    audit.record("card_keys_rotated", cards=rotated)
    print(f"re-encrypted {rotated} card(s) under the newest key")
    return 0


DEMO_SUCCESS_URL = "https://example.com/order/complete"
DEMO_CANCEL_URL = "https://example.com/cart"


async def _checkout_command(args: argparse.Namespace, services: Services) -> int:
    """Open a checkout session, as `POST /api/v1/checkout-sessions` would (make run's link)."""
    from payment_gateway.api.checkout_schemas import CheckoutSessionCreate
    from payment_gateway.api.problems import invalid_request

    if services.settings.seed_demo_merchants:
        await services.merchants.seed_demo_merchants()
    merchant = await services.merchants.by_name(args.merchant)
    try:
        body = CheckoutSessionCreate(
            amount=args.amount,
            currency=args.currency,
            reference=args.reference,
            success_url=args.success_url,
            cancel_url=args.cancel_url,
        )
    except ValidationError as exc:
        raise invalid_request(exc) from None
    session = await services.checkout.create(merchant, body.to_domain())
    print(session.url)
    return 0


async def _merchant_command(args: argparse.Namespace, service: MerchantService) -> int:
    if args.action in ("create", "add-key"):
        issued = await (service.create if args.action == "create" else service.add_key)(args.name)
        print(f"merchant: {issued.merchant.name} ({issued.merchant.id})")
        print(f"api key:  {issued.api_key}")
        print("Store this key now: it is shown once and cannot be recovered.", file=sys.stderr)
        return 0
    if args.action == "list":
        for key in await service.list_keys():
            state = f"revoked {key.revoked_at:%Y-%m-%d}" if key.revoked_at else "active"
            print(f"{key.merchant_name}\t{key.prefix}…\t{key.created_at:%Y-%m-%d}\t{state}")
        return 0
    count = await service.revoke(args.prefix)
    print(f"revoked {count} key(s)")
    return 0 if count else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m payment_gateway",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="apply database migrations")
    merchants = commands.add_parser("merchants", help="manage merchants and their API keys")
    actions = merchants.add_subparsers(dest="action", required=True)
    actions.add_parser("create", help="create a merchant").add_argument("name")
    actions.add_parser("add-key", help="issue another key").add_argument("name")
    actions.add_parser("list", help="list keys (prefix only)")
    actions.add_parser("revoke", help="revoke a key by prefix").add_argument("prefix")
    rotate = commands.add_parser("rotate-card-keys", help="re-encrypt cards under the newest key")
    rotate.add_argument("--batch-size", type=int, default=500)
    checkout = commands.add_parser("checkout", help="checkout sessions (hosted payment pages)")
    checkout_actions = checkout.add_subparsers(dest="action", required=True)
    create = checkout_actions.add_parser("create", help="open a hosted payment page")
    create.add_argument("merchant")
    create.add_argument("--amount", type=int, default=1000, help="minor units (default 1000)")
    create.add_argument("--currency", default="EUR")
    create.add_argument("--reference", default=None)
    create.add_argument("--success-url", default=DEMO_SUCCESS_URL)
    create.add_argument("--cancel-url", default=DEMO_CANCEL_URL)
    webhooks = commands.add_parser("webhooks", help="webhook tools for developers")
    tools = webhooks.add_subparsers(dest="action", required=True)
    listen = tools.add_parser("listen", help="receive, verify and print webhooks locally")
    listen.add_argument("--port", type=int, default=9000)
    listen.add_argument("--host", default="127.0.0.1")
    listen.add_argument(
        "--secret", action="append", required=True, help="the endpoint's whsec_… secret"
    )
    listen.add_argument("--json", action="store_true", help="print each event's whole body")
    return parser


def _webhooks_listen(args: argparse.Namespace) -> int:
    # Imported here: the other commands need none of it.
    from payment_gateway.webhooks.listen import listen
    from payment_gateway.webhooks.verification import is_webhook_secret

    for secret in args.secret:
        if not is_webhook_secret(secret):
            print(
                "error: --secret must be a whsec_… secret (base64 after the prefix)",
                file=sys.stderr,
            )
            return 2
    return listen(args.host, args.port, args.secret, as_json=args.json)


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "migrate":
        return await _migrate(settings)
    if args.command == "rotate-card-keys":
        return await _rotate_card_keys(settings, args.batch_size)
    async with services_for(settings, pool_size=2) as services:
        if args.command == "checkout":
            return await _checkout_command(args, services)
        return await _merchant_command(args, MerchantService(services.uow, cache_seconds=0))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "webhooks":
        return _webhooks_listen(args)  # a developer tool: no settings, no database
    settings = Settings()
    configure_logging(settings.log_level, settings.effective_log_format)
    structlog.contextvars.bind_contextvars(actor=audit.operator())
    try:
        return asyncio.run(_run(args, settings))
    # An operator command: a one-line reason beats a traceback.
    except GatewayError as exc:
        problems = "".join(f"; {error.field} {error.message}" for error in exc.errors)
        print(f"error: {exc.detail}{problems}", file=sys.stderr)
        return 1
    except KeyMismatch as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
