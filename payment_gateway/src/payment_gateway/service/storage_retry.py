"""Repeating storage work the database did not do: after a lost connection or a conflict.

Two kinds of failure, told apart by the storage layer:

- ``StorageContention``: the server rolled the transaction back (a lock wait timeout, a
  deadlock, or on a Galera cluster a certification conflict, which MariaDB reports as a
  deadlock, error 1213, at COMMIT). Nothing was written, so any transaction may run again.
  On a multi-primary cluster two nodes writing one row at once is ordinary, so these are
  retried several times, after a short random pause that keeps the racers apart.
- ``StorageUnavailable`` otherwise: the database could not be reached or the connection was
  lost, perhaps after the COMMIT was sent. Only work that is safe to repeat even if it did
  happen may be retried (``unavailable_retries``), and only a couple of times.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from payment_gateway.service.errors import StorageContention, StorageUnavailable

T = TypeVar("T")

CONTENTION_RETRIES = 8


async def retrying_storage(work: Callable[[], Awaitable[T]], *, unavailable_retries: int = 0) -> T:
    """Run ``work``; again after a conflict, and up to ``unavailable_retries`` times more
    when the database could not be reached. The last failure is raised."""
    contended = unavailable = 0
    while True:
        try:
            return await work()
        except StorageContention:
            if contended >= CONTENTION_RETRIES:
                raise
            contended += 1
            # Jittered and growing: racers that conflicted must not meet again at once.
            await asyncio.sleep(random.uniform(0.005, 0.025) * contended)
        except StorageUnavailable:
            if unavailable >= unavailable_retries:
                raise
            unavailable += 1
            await asyncio.sleep(0.05 * unavailable)
