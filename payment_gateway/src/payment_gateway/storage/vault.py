"""CardVault: encrypts card data at rest with Fernet, newest key first (rotation)."""

from __future__ import annotations

from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class VaultKeyError(ValueError):
    """The configured keys are unusable, or none of them opens a stored token."""


class CardVault:
    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise VaultKeyError("CARD_ENCRYPTION_KEYS needs at least one Fernet key")
        try:
            self._fernet = MultiFernet([Fernet(key) for key in keys])
        except (ValueError, TypeError) as exc:
            raise VaultKeyError(
                "CARD_ENCRYPTION_KEYS must be comma-separated url-safe base64 Fernet keys"
            ) from exc

    def encrypt(self, plaintext: str) -> bytes:
        return self._fernet.encrypt(plaintext.encode())

    def decrypt(self, token: bytes) -> str:
        try:
            return self._fernet.decrypt(token).decode()
        except InvalidToken as exc:
            raise VaultKeyError("no configured key decrypts this token") from exc

    def rotate(self, token: bytes) -> bytes:
        """Re-encrypt under the newest key (a no-op in meaning, not in bytes)."""
        try:
            return self._fernet.rotate(token)
        except InvalidToken as exc:
            raise VaultKeyError("no configured key decrypts this card") from exc
