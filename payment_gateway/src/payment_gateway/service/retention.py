"""Card data retention: the encrypted PAN and holder name are erased once no longer needed.

The app never decrypts them: a payment is read, replayed and reconciled by its id, with last
four, brand and expiry kept in clear. So once a payment is terminal and past
CARD_DATA_RETENTION_DAYS, its card's ciphertexts only add to what a breach could expose
(PCI DSS 3.2.1: keep account data no longer than needed).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import structlog

from payment_gateway.service.clock import Clock, utc_now
from payment_gateway.service.ports import UnitOfWorkFactory

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    retention: timedelta
    batch_size: int = 500  # cards per transaction: short row locks, bounded memory
    max_batches: int = 20  # per call, so one pass never holds up the reconciler for long


class CardDataEraser:
    def __init__(
        self, uow: UnitOfWorkFactory, policy: RetentionPolicy, clock: Clock = utc_now
    ) -> None:
        self._uow = uow
        self._policy = policy
        self._clock = clock

    async def erase_expired(self) -> int:
        """Erase the card data of terminal payments older than the retention, batch by batch.

        Returns how many cards were erased; anything left over goes on the next call.
        """
        erased = 0
        for _ in range(self._policy.max_batches):
            now = self._clock()
            async with self._uow() as uow:
                count = await uow.cards.erase_card_data(
                    now - self._policy.retention, self._policy.batch_size, now
                )
                await uow.commit()
            erased += count
            if count < self._policy.batch_size:
                break
        if erased:
            log.info("card_data_erased", count=erased)
        return erased
