"""The test receiver itself: answers by event and by phase, down for a while, back again."""

from __future__ import annotations

import time

import httpx
from payment_gateway.domain.webhooks import new_webhook_secret
from webhook_receiver import Answer, WebhookReceiver


def test_answers_by_event_then_queue_then_default_and_comes_back_after_going_down() -> None:
    with WebhookReceiver(secrets=[new_webhook_secret()], default=Answer(200)) as receiver:
        receiver.answer_next(Answer(500))
        receiver.answer_event("evt_9", Answer(410))
        with httpx.Client() as client:
            assert client.post(receiver.url, headers={"webhook-id": "evt_9"}).status_code == 410
            assert client.post(receiver.url).status_code == 500
            assert client.post(receiver.url).status_code == 200
        got = receiver.wait_for_sync(3)
        assert [r.verified for r in got] == [False] * 3  # unsigned
        assert got[0].error == "Missing required headers"
        port = receiver.port
        receiver.go_down(for_seconds=0.5)
        assert not receiver.running
        deadline = time.monotonic() + 10
        while not receiver.running and time.monotonic() < deadline:
            time.sleep(0.02)
        assert receiver.port == port
        with httpx.Client() as client:
            assert client.post(receiver.url).status_code == 200
