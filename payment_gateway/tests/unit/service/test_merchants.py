"""Merchant authentication and API keys: stored only as hashes (docs/design.md, Security)."""

from __future__ import annotations

import hashlib

import pytest
from fakes import FakeClock, FakeStore, FakeUnitOfWorkFactory
from payment_gateway.service.errors import Unauthorized
from payment_gateway.service.merchants import (
    DEMO_MERCHANTS,
    KEY_PREFIX_LENGTH,
    MerchantExists,
    MerchantService,
    hash_api_key,
    key_prefix,
)


@pytest.mark.parametrize("api_key", [None, "", "not-a-key", "first_merchant_mock_token"])
async def test_unknown_or_missing_key_is_unauthorized(
    merchant_service: MerchantService, api_key: str | None
) -> None:
    with pytest.raises(Unauthorized) as info:
        await merchant_service.authenticate(api_key)
    assert info.value.status_code == 401


async def test_created_key_authenticates_its_merchant(merchant_service: MerchantService) -> None:
    created = await merchant_service.create("acme")
    assert created.merchant.name == "acme"
    assert await merchant_service.authenticate(created.api_key) == created.merchant
    with pytest.raises(Unauthorized):
        await merchant_service.authenticate(created.api_key + "x")


async def test_only_the_sha256_of_the_key_is_stored(
    merchant_service: MerchantService, store: FakeStore
) -> None:
    created = await merchant_service.create("acme")
    api_key = created.api_key
    assert len(api_key) > 32
    (row,) = store.keys.values()
    assert row.key_hash == hashlib.sha256(api_key.encode()).hexdigest()
    assert row.key_hash == hash_api_key(api_key)
    assert row.prefix == api_key[:KEY_PREFIX_LENGTH]
    assert row.merchant_id == created.merchant.id
    assert api_key not in repr(store)
    # The listing shows the prefix, never the key.
    (info,) = await merchant_service.list_keys()
    assert info.prefix == key_prefix(api_key)
    assert api_key not in repr(info)


async def test_each_key_is_new(merchant_service: MerchantService) -> None:
    one = await merchant_service.create("one")
    two = await merchant_service.create("two")
    extra = await merchant_service.add_key("one")
    assert len({one.api_key, two.api_key, extra.api_key}) == 3
    assert await merchant_service.authenticate(extra.api_key) == one.merchant
    assert await merchant_service.authenticate(two.api_key) == two.merchant


async def test_duplicate_merchant_name(merchant_service: MerchantService, store: FakeStore) -> None:
    await merchant_service.create("acme")
    with pytest.raises(MerchantExists) as info:
        await merchant_service.create("acme")
    assert info.value.status_code == 409
    assert len(store.merchants) == 1
    assert len(store.keys) == 1


async def test_revoke_by_prefix(merchant_service: MerchantService, clock: FakeClock) -> None:
    keep = await merchant_service.create("keep")
    gone = await merchant_service.create("gone")
    assert await merchant_service.revoke(key_prefix(gone.api_key)) == 1
    with pytest.raises(Unauthorized):
        await merchant_service.authenticate(gone.api_key)
    assert await merchant_service.authenticate(keep.api_key) == keep.merchant
    assert await merchant_service.revoke(key_prefix(gone.api_key)) == 0  # already revoked
    assert await merchant_service.revoke("pgw_nothing") == 0
    revoked = {info.merchant_name: info.revoked_at for info in await merchant_service.list_keys()}
    assert revoked == {"gone": clock(), "keep": None}


async def test_seed_demo_merchants_is_idempotent(
    merchant_service: MerchantService, store: FakeStore
) -> None:
    await merchant_service.seed_demo_merchants()
    await merchant_service.seed_demo_merchants()
    assert sorted(m.name for m in store.merchants.values()) == sorted(DEMO_MERCHANTS)
    assert len(store.keys) == len(DEMO_MERCHANTS)
    for name, token in DEMO_MERCHANTS.items():
        assert (await merchant_service.authenticate(token)).name == name
        assert token not in repr(store)


async def test_cached_authentication_reads_the_store_once(
    uow_factory: FakeUnitOfWorkFactory, clock: FakeClock
) -> None:
    service = MerchantService(uow_factory, cache_seconds=60, clock=clock)
    created = await service.create("acme")
    opened = len(uow_factory.opened)
    for _ in range(3):
        assert await service.authenticate(created.api_key) == created.merchant
    assert len(uow_factory.opened) == opened + 1
