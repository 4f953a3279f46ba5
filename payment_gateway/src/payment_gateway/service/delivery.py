"""Webhook delivery: every replica's worker sends the events of the outbox to the endpoints.

A cycle fans new events out into deliveries (born claimed by this worker), claims the
deliveries whose retry is due, sends them all at once, and records every attempt in one
transaction. Claims are leases: a worker killed mid-send leaves its deliveries due again when
the lease ends, so an event is delivered at least once and never lost; a lease outlasts the
send timeout, so no attempt is sent twice at once. A payment never waits for any of this.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar

import structlog

from payment_gateway.domain.deliveries import GONE, DeliverySchedule, DeliveryStatus
from payment_gateway.domain.webhooks import SendResult, WebhookMessage
from payment_gateway.metrics import (
    WEBHOOK_ATTEMPTS,
    WEBHOOK_DELIVERY_LAG,
    WEBHOOK_OLDEST_UNDELIVERED,
)
from payment_gateway.service.clock import Clock, utc_now
from payment_gateway.service.ports import (
    DeliveryOutcome,
    DueDelivery,
    SecretCipher,
    WebhookSender,
    WebhookUnitOfWork,
    WebhookUnitOfWorkFactory,
)
from payment_gateway.service.storage_retry import retrying_storage

log = structlog.get_logger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    schedule: DeliverySchedule = field(default_factory=DeliverySchedule)
    batch_size: int = 200
    # Longer than a send may take (its timeout) plus recording it, so that no other worker
    # takes a delivery while this one is still sending it.
    lease_seconds: float = 30.0
    # Events committed by other replicas are found on this poll; this process's own wake it.
    # Retries (and deliveries whose lease ran out) are looked for on the poll only: they are
    # due seconds after their last try, so a wake-up need not look again.
    poll_interval_seconds: float = 1.0
    # After a wake-up, gather the events that commits make meanwhile into the same cycle:
    # each cycle costs a few transactions whatever it carries, and at a payment every few
    # milliseconds that was most of a payment's statements and CPU. 100 ms (with batches of
    # up to 200) rather than 50 (and 100) was 2-9 % more payments a second at c16 and c64
    # with an endpoint subscribed (README, Performance), for 50 ms more lag.
    wake_linger_seconds: float = 0.1
    batches_in_flight: int = 4  # batches being sent at once, each up to batch_size
    event_retention: timedelta = timedelta(days=30)
    housekeeping_interval_seconds: float = 60.0  # retention and the oldest-event gauge


class WebhookDelivery:
    def __init__(
        self,
        uow: WebhookUnitOfWorkFactory,
        sender: WebhookSender,
        cipher: SecretCipher,
        policy: DeliveryPolicy,
        clock: Clock = utc_now,
    ) -> None:
        self._uow = uow
        self._sender = sender
        # Every attempt to an endpoint signs with the same stored secrets: decrypting them
        # (Fernet: an HMAC check and AES) once per attempt was 1 % of the gateway's CPU at
        # c64. Keyed by the encrypted token, so a rotated secret is a new entry.
        self._decrypt = functools.lru_cache(maxsize=1024)(cipher.decrypt)
        self._policy = policy
        self._clock = clock
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """New events were committed here: look now rather than at the next poll."""
        self._wake.set()

    async def run_forever(self) -> None:
        """Claim and send, batch after batch, without waiting for a batch's slowest receiver.

        Each claimed batch is sent and recorded in a task of its own, up to
        ``batches_in_flight`` at once: a receiver that takes its whole timeout to answer holds
        up its own batch only, not the other merchants' webhooks behind it.
        """
        in_flight: set[asyncio.Task[None]] = set()
        next_housekeeping = next_retries = 0.0
        loop = asyncio.get_running_loop()
        try:
            while True:
                self._wake.clear()
                claimed = 0
                try:
                    if len(in_flight) < self._policy.batches_in_flight:
                        with_retries = loop.time() >= next_retries
                        due = await self._claim(with_retries=with_retries)
                        claimed = len(due)
                        if with_retries and claimed < self._policy.batch_size:
                            next_retries = loop.time() + self._policy.poll_interval_seconds
                        if due:
                            task = asyncio.create_task(self._send_and_record(due))
                            in_flight.add(task)
                            task.add_done_callback(in_flight.discard)
                    if loop.time() >= next_housekeeping:
                        await self.housekeeping()
                        next_housekeeping = loop.time() + self._policy.housekeeping_interval_seconds
                except Exception:  # the database is away, most likely: try again next round
                    log.exception("webhook_delivery_cycle_failed")
                if (
                    claimed < self._policy.batch_size
                    or len(in_flight) >= self._policy.batches_in_flight
                ):
                    await self._idle(in_flight)
        finally:
            # Shutting down: what is being sent stays claimed and is sent again after its
            # lease, by this replica or another (at least once). The batches are waited for,
            # so that none is left using the database after the process closes it.
            for task in in_flight:
                task.cancel()
            await asyncio.gather(*in_flight, return_exceptions=True)

    async def _idle(self, in_flight: set[asyncio.Task[None]]) -> None:
        """Until woken (and then the linger), a batch ends (room for another) or the poll
        interval passes."""
        woken = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait(
                {woken, *in_flight},
                timeout=self._policy.poll_interval_seconds,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            woken.cancel()
        if self._wake.is_set():
            await asyncio.sleep(self._policy.wake_linger_seconds)

    async def deliver_due(self) -> int:
        """One cycle, start to end; returns how many attempts it made."""
        due = await self._claim()
        if due:
            await self._send_and_record(due)
        return len(due)

    async def _claim(self, *, with_retries: bool = True) -> list[DueDelivery]:
        """New events fanned out, then due retries: up to a batch, leased to this worker."""
        policy = self._policy
        now = self._clock()
        lease_until = now + timedelta(seconds=policy.lease_seconds)
        due = await self._committed(
            lambda uow: uow.webhooks.fan_out(now, policy.batch_size, lease_until)
        )
        if with_retries and len(due) < policy.batch_size:
            room = policy.batch_size - len(due)
            due += await self._committed(lambda uow: uow.webhooks.claim_due(now, room, lease_until))
        return due

    async def _committed(self, work: Callable[[WebhookUnitOfWork], Awaitable[T]]) -> T:
        """``work`` in a transaction of its own, committed. A deadlock (another replica's
        claim, or the writes of new events) or a lock wait timeout rolled it back, with
        nothing written: it runs again (``retrying_storage``)."""

        async def attempt() -> T:
            async with self._uow() as uow:
                result = await work(uow)
                await uow.commit()
            return result

        return await retrying_storage(attempt)

    async def _send_and_record(self, due: list[DueDelivery]) -> None:
        try:
            results = await asyncio.gather(*(self._send(delivery) for delivery in due))
            outcomes = [
                self._outcome(delivery, attempted_at, result)
                for delivery, (attempted_at, result) in zip(due, results, strict=True)
            ]
            # Retried after a deadlock: left unrecorded, every webhook of the batch would be
            # sent a second time once its lease ran out.
            await self._committed(
                lambda uow: uow.webhooks.record_outcomes(
                    outcomes, self._clock() - self._policy.schedule.disable_after
                )
            )
        except Exception:  # not recorded: the deliveries are sent again after their lease
            log.exception("webhook_batch_not_recorded", deliveries=len(due))
            return
        for outcome in outcomes:
            _count(outcome)

    async def housekeeping(self) -> None:
        """Drop events past their retention; measure how far behind delivery is."""
        now = self._clock()
        async with self._uow() as uow:
            await uow.webhooks.delete_events_before(now - self._policy.event_retention, 500)
            await uow.commit()
        async with self._uow(read_only=True) as uow:
            oldest = await uow.webhooks.oldest_undelivered_at()
        WEBHOOK_OLDEST_UNDELIVERED.set(0 if oldest is None else (now - oldest).total_seconds())

    async def _send(self, delivery: DueDelivery) -> tuple[datetime, SendResult]:
        event = delivery.event
        attempted_at = self._clock()
        try:
            secrets = tuple(self._decrypt(token) for token in delivery.secrets_encrypted)
        except Exception:  # under a key no longer configured: this endpoint's alone fails
            log.error("webhook_secret_unreadable", endpoint_id=delivery.endpoint_id)
            return attempted_at, SendResult(
                None, 0, "cannot decrypt the signing secret", None, None
            )
        result = await self._sender.send(
            delivery.url, WebhookMessage(event.id, event.body, secrets)
        )
        return attempted_at, result

    def _outcome(
        self, delivery: DueDelivery, attempted_at: datetime, result: SendResult
    ) -> DeliveryOutcome:
        if result.delivered:
            return DeliveryOutcome(delivery, attempted_at, result, DeliveryStatus.DELIVERED, None)
        # Counted from the attempt's end: a timed-out one is not retried at once. A 410 is
        # never retried: the endpoint is gone.
        retry_at = (
            None
            if result.status_code == GONE
            else self._policy.schedule.next_attempt_at(
                self._clock(), delivery.attempts + 1, result.retry_after_seconds
            )
        )
        status = DeliveryStatus.FAILED if retry_at is None else DeliveryStatus.PENDING
        return DeliveryOutcome(delivery, attempted_at, result, status, retry_at)


def _count(outcome: DeliveryOutcome) -> None:
    if outcome.status is DeliveryStatus.DELIVERED:
        WEBHOOK_ATTEMPTS.labels("delivered").inc()
        lag = outcome.attempted_at - outcome.delivery.event.created_at
        WEBHOOK_DELIVERY_LAG.observe(max(lag.total_seconds(), 0) + outcome.result.duration_ms / 1e3)
        return
    WEBHOOK_ATTEMPTS.labels(
        "retrying" if outcome.status is DeliveryStatus.PENDING else "failed"
    ).inc()
    log.info(
        "webhook_attempt_failed",
        event_id=outcome.delivery.event.id,
        endpoint_id=outcome.delivery.endpoint_id,
        status_code=outcome.result.status_code,
        error=outcome.result.error,
        will_retry=outcome.status is DeliveryStatus.PENDING,
    )
