"""Webhook delivery to a real HTTP receiver that verifies every signature with the Standard
Webhooks library, from a gateway on real SQLite and MariaDB.

The retry schedule is made short by configuration (WEBHOOK_RETRY_DELAYS); the tests run the
delivery worker's cycle themselves, except where the worker's own loop is what is tested.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fakes import FakeBank
from payment_gateway.bootstrap import Services
from payment_gateway.main import create_app
from payment_gateway.storage.tables import events, webhook_deliveries, webhook_endpoints
from payment_gateway.storage.webhooks import SqlWebhookRepository
from sqlalchemy import func, select, update
from sqlalchemy.exc import OperationalError
from webhook_receiver import Answer, WebhookReceiver

from .conftest import gateway_settings, payment_body

PAYMENTS = "/api/v1/payments"
ENDPOINTS = "/api/v1/webhook-endpoints"
EVENTS = "/api/v1/events"
RETRY = 0.3  # seconds between attempts, in these tests


@dataclass
class Hooked:
    """A gateway, a merchant of the test's own, and an endpoint of it at a real receiver."""

    client: httpx.AsyncClient
    services: Services
    receiver: WebhookReceiver
    endpoint: dict[str, Any]

    async def pay(self, number: str = "4242424242424242") -> dict[str, Any]:
        response = await self.client.post(PAYMENTS, json=payment_body(number))
        assert response.status_code == 201
        payment: dict[str, Any] = response.json()
        return payment

    async def deliver(self) -> None:
        """Run delivery cycles until nothing is left to hand out or due now."""
        for _ in range(100):
            await self.services.delivery.deliver_due()
            if not await self._waiting_now():
                return
        raise AssertionError("deliveries kept coming")

    async def _waiting_now(self) -> int:
        now = datetime.now(UTC)
        async with self.services.uow.engine.connect() as connection:
            fresh = await connection.scalar(
                select(func.count()).select_from(events).where(events.c.fanout_due_at <= now)
            )
            due = await connection.scalar(
                select(func.count())
                .select_from(webhook_deliveries)
                .where(webhook_deliveries.c.next_attempt_at <= now)
            )
        return int(fresh or 0) + int(due or 0)

    async def deliveries(self) -> list[dict[str, Any]]:
        path = f"{ENDPOINTS}/{self.endpoint['id']}/deliveries"
        response = await self.client.get(path, params={"limit": 100})
        assert response.status_code == 200
        found: list[dict[str, Any]] = response.json()["data"]
        return found

    async def endpoint_now(self) -> dict[str, Any]:
        found: dict[str, Any] = (await self.client.get(f"{ENDPOINTS}/{self.endpoint['id']}")).json()
        return found

    async def event_of(self, payment_id: str) -> dict[str, Any]:
        listed = (await self.client.get(EVENTS, params={"limit": 100})).json()["data"]
        return next(e for e in listed if e["data"]["object"]["id"] == payment_id)


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as running:
        yield running


async def _hooked(
    database_url: str, tmp_path: Path, receiver: WebhookReceiver, **settings: object
) -> AsyncIterator[Hooked]:
    values: dict[str, object] = {
        "webhook_retry_delays": f"{RETRY},{RETRY},{RETRY}",
        "webhook_retry_jitter": 0,
        "webhook_timeout_seconds": 1.0,
        **settings,
    }
    app = create_app(
        gateway_settings(database_url, tmp_path, **values), bank=FakeBank(), run_reconciler=False
    )
    async with LifespanManager(app) as manager:
        services: Services = app.state.services
        issued = await services.merchants.create(f"webhooks-{uuid.uuid4().hex[:12]}")
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://gateway",
            headers={"Authorization": f"Bearer {issued.api_key}"},
        ) as client:
            created = await client.post(ENDPOINTS, json={"url": receiver.url})
            assert created.status_code == 201
            endpoint = created.json()
            receiver.secrets = [endpoint["secret"]]
            hooked = Hooked(client, services, receiver, endpoint)
            await hooked.deliver()  # what other tests left behind on a shared database
            receiver.clear()
            yield hooked


@pytest.fixture
async def hooked(
    database_url: str, tmp_path: Path, receiver: WebhookReceiver
) -> AsyncIterator[Hooked]:
    async for value in _hooked(database_url, tmp_path, receiver):
        yield value


async def test_an_event_arrives_signed_byte_for_byte(hooked: Hooked) -> None:
    payment = await hooked.pay()
    await hooked.deliver()
    [request] = await hooked.receiver.wait_for(1)
    assert request.verified, request.error
    event = await hooked.event_of(payment["id"])
    assert request.event_id == event["id"]
    stored = await hooked.client.get(f"{EVENTS}/{event['id']}")
    assert request.body == stored.content  # the stored bytes, never re-serialised
    assert request.json()["type"] == "payment.succeeded"
    assert request.json()["data"]["object"] == payment
    assert request.headers["content-type"] == "application/json"
    sent_at = int(request.headers["webhook-timestamp"])
    assert abs(sent_at - time.time()) < 60

    [delivery] = await hooked.deliveries()
    assert (delivery["status"], delivery["event_id"], delivery["event_type"]) == (
        "delivered",
        event["id"],
        "payment.succeeded",
    )
    [attempt] = delivery["attempts"]
    assert (attempt["status_code"], attempt["error"]) == (204, None)
    assert attempt["duration_ms"] >= 0


async def test_the_worker_delivers_a_new_event_without_waiting_for_its_poll(
    database_url: str, tmp_path: Path, receiver: WebhookReceiver
) -> None:
    # A poll far longer than the wait below: only the commit's wake-up can deliver in time.
    async for hooked in _hooked(database_url, tmp_path, receiver, webhook_poll_interval_seconds=60):
        worker = asyncio.create_task(hooked.services.delivery.run_forever())
        try:
            await asyncio.sleep(0.2)  # the worker's first cycle, then it waits
            payment = await hooked.pay()
            [request] = await receiver.wait_for(1, timeout=5)
            assert request.json()["data"]["object"]["id"] == payment["id"]
            assert request.verified
        finally:
            worker.cancel()
            with pytest.raises(asyncio.CancelledError):
                await worker


async def test_events_committed_together_go_out_in_one_cycle_without_a_retry_scan(
    database_url: str,
    tmp_path: Path,
    receiver: WebhookReceiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cycles: list[str] = []
    for name in ("fan_out", "claim_due"):
        original = getattr(SqlWebhookRepository, name)

        async def counted(self: Any, *args: Any, _name: str = name, _f: Any = original) -> Any:
            cycles.append(_name)
            return await _f(self, *args)

        monkeypatch.setattr(SqlWebhookRepository, name, counted)
    async for hooked in _hooked(database_url, tmp_path, receiver, webhook_poll_interval_seconds=60):
        cycles.clear()  # the fixture's own deliveries
        worker = asyncio.create_task(hooked.services.delivery.run_forever())
        try:
            await asyncio.sleep(0.2)  # the first cycle (with its retry scan), then it waits
            assert cycles == ["fan_out", "claim_due"]
            # Four payments, each waking the worker as it commits, within its linger.
            paid = await asyncio.gather(*(hooked.pay() for _ in range(4)))
            arrived = await receiver.wait_for(4, timeout=5)
            assert {r.json()["data"]["object"]["id"] for r in arrived} == {p["id"] for p in paid}
            await asyncio.sleep(0.2)
        finally:
            worker.cancel()
            with pytest.raises(asyncio.CancelledError):
                await worker
    # The wakes of the four commits made one more cycle (at most two, if the first payment's
    # came before the others' linger), and retries are left to the 60 s poll.
    assert cycles[2:] in (["fan_out"], ["fan_out", "fan_out"])


async def test_a_failing_receiver_gets_the_retries_then_the_event(hooked: Hooked) -> None:
    hooked.receiver.answer_next(Answer(500, body=b"x" * 5000), Answer(503))
    await hooked.pay()
    await hooked.deliver()
    assert [r.answer.status for r in hooked.receiver.requests] == [500]
    for _ in range(2):
        await asyncio.sleep(RETRY + 0.1)
        await hooked.deliver()
    statuses = [r.answer.status for r in hooked.receiver.requests]
    assert statuses == [500, 503, 204]
    assert len({r.event_id for r in hooked.receiver.requests}) == 1  # one event, three tries
    [delivery] = await hooked.deliveries()
    assert delivery["status"] == "delivered"
    assert [a["status_code"] for a in delivery["attempts"]] == [500, 503, 204]
    assert len(delivery["attempts"][0]["response_excerpt"]) == 1024  # cut to 1 KiB
    assert (await hooked.endpoint_now())["status"] == "enabled"


async def test_a_receiver_slower_than_the_timeout_is_tried_again(hooked: Hooked) -> None:
    hooked.receiver.answer_next(Answer(204, delay=3))  # the timeout is 1 s
    await hooked.pay()
    await hooked.deliver()
    [delivery] = await hooked.deliveries()
    assert delivery["status"] == "pending"
    assert delivery["attempts"][0]["status_code"] is None
    assert "timeout" in delivery["attempts"][0]["error"]
    await asyncio.sleep(RETRY + 0.1)
    await hooked.deliver()
    [delivery] = await hooked.deliveries()
    assert delivery["status"] == "delivered"


async def test_a_receiver_down_for_a_while_gets_the_event_when_back(hooked: Hooked) -> None:
    hooked.receiver.stop()
    await hooked.pay()
    await hooked.deliver()
    [delivery] = await hooked.deliveries()
    assert delivery["status"] == "pending"
    assert delivery["attempts"][0]["error"]
    hooked.receiver.start()
    await asyncio.sleep(RETRY + 0.1)
    await hooked.deliver()
    [request] = await hooked.receiver.wait_for(1)
    assert request.verified
    assert (await hooked.deliveries())[0]["status"] == "delivered"


async def test_a_delivery_is_given_up_after_the_last_retry(hooked: Hooked) -> None:
    hooked.receiver.default = Answer(500)
    await hooked.pay()
    for _ in range(6):
        await hooked.deliver()
        await asyncio.sleep(RETRY + 0.1)
    assert len(hooked.receiver.requests) == 4  # the first attempt and three retries
    [delivery] = await hooked.deliveries()
    assert (delivery["status"], delivery["next_attempt_at"]) == ("failed", None)
    assert len(delivery["attempts"]) == 4
    # Failing for less than WEBHOOK_DISABLE_AFTER_SECONDS (5 days): still enabled.
    assert (await hooked.endpoint_now())["status"] == "enabled"


async def test_an_endpoint_failing_for_too_long_is_disabled(
    database_url: str, tmp_path: Path, receiver: WebhookReceiver
) -> None:
    async for hooked in _hooked(
        database_url, tmp_path, receiver, webhook_disable_after_seconds=0.5
    ):
        receiver.default = Answer(500)
        await hooked.pay()
        await hooked.deliver()
        await asyncio.sleep(0.6)
        await hooked.deliver()
        endpoint = await hooked.endpoint_now()
        assert (endpoint["status"], endpoint["disabled_reason"]) == ("disabled", "failing")
        sent = len(receiver.requests)
        await hooked.pay()
        await asyncio.sleep(RETRY + 0.1)
        await hooked.deliver()
        assert len(receiver.requests) == sent  # nothing more goes to it


async def test_410_gone_disables_the_endpoint_at_once(hooked: Hooked) -> None:
    hooked.receiver.default = Answer(410)
    await hooked.pay()
    await hooked.deliver()
    endpoint = await hooked.endpoint_now()
    assert (endpoint["status"], endpoint["disabled_reason"]) == ("disabled", "endpoint_gone")
    [delivery] = await hooked.deliveries()
    assert delivery["status"] == "failed"
    await hooked.pay()
    await asyncio.sleep(RETRY + 0.1)
    await hooked.deliver()
    assert len(hooked.receiver.requests) == 1


async def test_retry_after_is_honoured(hooked: Hooked) -> None:
    hooked.receiver.answer_next(Answer(503, retry_after="2"))
    await hooked.pay()
    await hooked.deliver()
    [delivery] = await hooked.deliveries()
    attempted = datetime.fromisoformat(delivery["attempts"][0]["attempted_at"])
    next_attempt = datetime.fromisoformat(delivery["next_attempt_at"])
    assert (next_attempt - attempted).total_seconds() >= 2  # not the schedule's 0.3 s
    await asyncio.sleep(RETRY + 0.1)
    await hooked.deliver()
    assert len(hooked.receiver.requests) == 1  # not yet


async def test_after_a_rotation_both_secrets_sign_for_the_overlap(hooked: Hooked) -> None:
    old = hooked.endpoint["secret"]
    rotated = await hooked.client.post(f"{ENDPOINTS}/{hooked.endpoint['id']}/rotate-secret")
    new = rotated.json()["secret"]
    hooked.receiver.secrets = [new, old]
    await hooked.pay()
    await hooked.deliver()
    [request] = await hooked.receiver.wait_for(1)
    assert request.verified
    assert set(request.matched) == {new, old}  # a receiver on either secret accepts it
    assert len(request.headers["webhook-signature"].split(" ")) == 2


async def test_redelivery_by_api_sends_the_same_event_again(hooked: Hooked) -> None:
    payment = await hooked.pay()
    await hooked.deliver()
    event = await hooked.event_of(payment["id"])
    again = await hooked.client.post(f"{EVENTS}/{event['id']}/redeliver")
    assert again.status_code == 202
    assert again.json() == {"event_id": event["id"], "endpoints": 1}
    await hooked.deliver()
    requests = await hooked.receiver.wait_for(2)
    assert [r.event_id for r in requests] == [event["id"], event["id"]]
    assert requests[0].body == requests[1].body
    [delivery] = await hooked.deliveries()
    assert len(delivery["attempts"]) == 2


async def test_an_endpoint_gets_only_the_types_it_subscribed_to(hooked: Hooked) -> None:
    path = f"{ENDPOINTS}/{hooked.endpoint['id']}"
    await hooked.client.patch(path, json={"enabled_events": ["payment.failed"]})
    await hooked.pay()
    declined = await hooked.pay("4000000000000002")
    await hooked.deliver()
    [request] = await hooked.receiver.wait_for(1)
    assert (request.json()["type"], request.json()["data"]["object"]["id"]) == (
        "payment.failed",
        declined["id"],
    )


async def test_a_disabled_endpoint_waits_and_gets_its_pending_events_once_enabled(
    hooked: Hooked,
) -> None:
    path = f"{ENDPOINTS}/{hooked.endpoint['id']}"
    hooked.receiver.answer_next(Answer(500))
    payment = await hooked.pay()
    await hooked.deliver()  # failed once: pending, to be retried
    await hooked.client.patch(path, json={"disabled": True})
    await asyncio.sleep(RETRY + 0.1)
    await hooked.deliver()
    assert len(hooked.receiver.requests) == 1  # the retry waits while it is disabled
    while_disabled = await hooked.pay()
    await hooked.deliver()
    await hooked.client.patch(path, json={"disabled": False})
    await hooked.deliver()
    requests = await hooked.receiver.wait_for(2)
    assert requests[1].json()["data"]["object"]["id"] == payment["id"]
    assert requests[1].verified
    # An event of a time the endpoint was disabled is not sent to it (as Stripe does);
    # redelivery by API sends it on request.
    assert while_disabled["id"] not in [r.json()["data"]["object"]["id"] for r in requests]
    event = await hooked.event_of(while_disabled["id"])
    await hooked.client.post(f"{EVENTS}/{event['id']}/redeliver")
    await hooked.deliver()
    third = (await hooked.receiver.wait_for(3))[2]
    assert third.json()["data"]["object"]["id"] == while_disabled["id"]


async def test_a_worker_that_died_mid_send_leaves_the_delivery_to_be_sent_again(
    hooked: Hooked,
) -> None:
    services = hooked.services
    hooked.receiver.default = Answer(204, delay=3)  # the send is under way ...
    await hooked.pay()
    cycle = asyncio.create_task(services.delivery.deliver_due())
    await hooked.receiver.wait_for(1)
    cycle.cancel()  # ... when the worker dies: nothing of the attempt was recorded
    with pytest.raises(asyncio.CancelledError):
        await cycle
    hooked.receiver.default = Answer(204)
    await hooked.deliver()
    assert len(hooked.receiver.requests) == 1  # claimed: nobody sends it during the lease
    async with services.uow.engine.begin() as connection:  # the lease runs out
        await connection.execute(
            update(webhook_deliveries)
            .where(webhook_deliveries.c.endpoint_id == hooked.endpoint["id"])
            .values(next_attempt_at=datetime.now(UTC))
        )
    await hooked.deliver()
    requests = await hooked.receiver.wait_for(2)
    assert requests[0].event_id == requests[1].event_id  # at least once: sent again
    assert (await hooked.deliveries())[0]["status"] == "delivered"


async def test_a_slow_receiver_does_not_hold_up_another_merchants_webhooks(
    database_url: str, tmp_path: Path, receiver: WebhookReceiver
) -> None:
    async for hooked in _hooked(database_url, tmp_path, receiver, webhook_timeout_seconds=5):
        issued = await hooked.services.merchants.create(f"webhooks-{uuid.uuid4().hex[:12]}")
        other = {"Authorization": f"Bearer {issued.api_key}"}
        with WebhookReceiver() as fast:
            created = await hooked.client.post(ENDPOINTS, json={"url": fast.url}, headers=other)
            fast.secrets = [created.json()["secret"]]
            receiver.default = Answer(204, delay=4)  # the first merchant's receiver is slow
            worker = asyncio.create_task(hooked.services.delivery.run_forever())
            try:
                await hooked.pay()
                [slow] = await receiver.wait_for(1)  # its batch is being sent ...
                paid = await hooked.client.post(PAYMENTS, json=payment_body(), headers=other)
                [quick] = await fast.wait_for(1, timeout=3)  # ... and this one gets through
                assert quick.json()["data"]["object"]["id"] == paid.json()["id"]
                assert quick.received_at - slow.received_at < 3
            finally:
                worker.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await worker


async def test_a_secret_no_key_decrypts_fails_its_own_delivery_only(hooked: Hooked) -> None:
    with WebhookReceiver() as other_receiver:
        other = await hooked.client.post(ENDPOINTS, json={"url": other_receiver.url})
        other_receiver.secrets = [other.json()["secret"]]
        async with hooked.services.uow.engine.begin() as connection:  # e.g. its key was dropped
            await connection.execute(
                update(webhook_endpoints)
                .where(webhook_endpoints.c.id == hooked.endpoint["id"])
                .values(secret_encrypted=b"not a fernet token")
            )
        await hooked.pay()
        await hooked.deliver()
        [request] = await other_receiver.wait_for(1)
        assert request.verified
        assert hooked.receiver.requests == []
        [delivery] = await hooked.deliveries()
        assert delivery["attempts"][0]["error"] == "cannot decrypt the signing secret"


def deadlock() -> OperationalError:
    """What SQLAlchemy raises when MariaDB picks a transaction as a deadlock's victim."""
    victim = Exception(1213, "Deadlock found when trying to get lock; try restarting transaction")
    return OperationalError("UPDATE events SET fanout_due_at=%s", {}, victim)


@pytest.mark.parametrize("step", ["fan_out", "record_outcomes"])
async def test_a_deadlocked_claim_or_record_runs_again_and_the_webhook_goes_once(
    hooked: Hooked, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    # Two replicas' claims, or a claim and the writes of new events, deadlock now and then
    # on MariaDB (seen in make bench); the server rolled that transaction back.
    original = getattr(SqlWebhookRepository, step)
    failures = [deadlock()]

    async def deadlocked_once(self: SqlWebhookRepository, *args: Any) -> Any:
        if failures:
            raise failures.pop()
        return await original(self, *args)

    monkeypatch.setattr(SqlWebhookRepository, step, deadlocked_once)
    await hooked.pay()
    await hooked.services.delivery.deliver_due()
    assert not failures
    [delivery] = await hooked.deliveries()  # sent and recorded in that one cycle
    assert delivery["status"] == "delivered"
    assert len(delivery["attempts"]) == 1
    assert len(await hooked.receiver.wait_for(1)) == 1
