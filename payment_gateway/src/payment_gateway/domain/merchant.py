"""Merchants and the API keys they authenticate with."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Merchant:
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class ApiKeyInfo:
    """What may be shown about a key after creation: never the key itself."""

    id: str
    merchant_name: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None
