"""CardVault: Fernet encryption at rest, with key rotation."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from payment_gateway.storage.vault import CardVault, VaultKeyError

PAN = "4242424242424242"


def test_round_trip() -> None:
    vault = CardVault([Fernet.generate_key()])
    for plaintext in (PAN, "Zoë Ångström", ""):
        assert vault.decrypt(vault.encrypt(plaintext)) == plaintext


def test_token_does_not_contain_the_plaintext() -> None:
    token = CardVault([Fernet.generate_key()]).encrypt(PAN)
    assert PAN.encode() not in token
    assert isinstance(token, bytes)


def test_encryption_is_randomized() -> None:
    vault = CardVault([Fernet.generate_key()])
    assert vault.encrypt(PAN) != vault.encrypt(PAN)


def test_rotation_moves_data_to_the_newest_key() -> None:
    old, new = Fernet.generate_key(), Fernet.generate_key()
    token = CardVault([old]).encrypt(PAN)
    with pytest.raises(VaultKeyError):
        CardVault([new]).decrypt(token)
    rotated = CardVault([new, old]).rotate(token)
    assert CardVault([new]).decrypt(rotated) == PAN
    with pytest.raises(VaultKeyError):
        CardVault([old]).decrypt(rotated)


def test_both_keys_decrypt_during_rotation() -> None:
    old, new = Fernet.generate_key(), Fernet.generate_key()
    vault = CardVault([new, old])
    assert vault.decrypt(CardVault([old]).encrypt(PAN)) == PAN
    assert CardVault([new]).decrypt(vault.encrypt(PAN)) == PAN  # newest key encrypts


def test_rotate_with_no_matching_key() -> None:
    token = CardVault([Fernet.generate_key()]).encrypt(PAN)
    with pytest.raises(VaultKeyError):
        CardVault([Fernet.generate_key()]).rotate(token)


@pytest.mark.parametrize("token", [b"", b"garbage", b"gAAAAA" + b"A" * 100])
def test_decrypt_garbage(token: bytes) -> None:
    with pytest.raises(VaultKeyError):
        CardVault([Fernet.generate_key()]).decrypt(token)


@pytest.mark.parametrize(
    "keys",
    [
        [],
        [b"not-a-fernet-key"],
        [b""],
        [Fernet.generate_key()[:-4]],
        [Fernet.generate_key(), b"short"],
    ],
)
def test_invalid_key_configuration(keys: list[bytes]) -> None:
    with pytest.raises(VaultKeyError):
        CardVault(keys)
