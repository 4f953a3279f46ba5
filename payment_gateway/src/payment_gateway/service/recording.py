"""Recording payments through the unit of work, one transaction per write."""

from __future__ import annotations

from payment_gateway.service.ports import NewPayment, Outcome, UnitOfWorkFactory


class TransactionalRecorder:
    """Records each new payment in a transaction of its own."""

    def __init__(self, uow: UnitOfWorkFactory) -> None:
        self._uow = uow

    async def record(self, new: NewPayment) -> None:
        async with self._uow() as uow:
            await uow.payments.add(new.payment, new.card, new.idempotency, new.next_attempt_at)
            await uow.commit()

    async def record_outcome(self, outcome: Outcome) -> bool:
        async with self._uow(single_statement=True) as uow:
            applied = await uow.payments.apply_resolution(
                outcome.payment_id, outcome.resolution, outcome.now, outcome.next_attempt_at
            )
            await uow.commit()
        return applied
