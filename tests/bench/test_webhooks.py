"""Issue 11's section: the receiver, the deliveries against the events, the report."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from standardwebhooks import Webhook

from bench.markdown import render_markdown
from bench.results import (
    WITHOUT_WEBHOOKS,
    Report,
    WebhookDelivery,
    load_report,
    report_from_json,
    report_to_json,
)
from bench.webhook_receiver import NO_CONTENT, Received, ReceiverProtocol
from bench.webhooks import delivery_result, delivery_targets, percentile
from tests.bench.stored_results import STORED_JSON

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
CREATED = "2026-11-26T04:00:00.000000Z"
CREATED_EPOCH = datetime(2026, 11, 26, 4, tzinfo=UTC).timestamp()


def signed_request(event_id: str, *, secret: str = SECRET) -> bytes:
    body = orjson.dumps({"id": event_id, "object": "event", "created_at": CREATED})
    now = datetime.now(UTC)
    signature = Webhook(secret).sign(event_id, now, body.decode())
    head = (
        f"POST /hooks HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        f"webhook-id: {event_id}\r\nwebhook-timestamp: {int(now.timestamp())}\r\n"
        f"webhook-signature: {signature}\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True


def test_the_receiver_answers_pipelined_requests_in_pieces_and_verifies_each() -> None:
    received = Received(Webhook(SECRET))
    protocol = ReceiverProtocol(received)
    transport = FakeTransport()
    protocol.connection_made(transport)
    stream = signed_request("evt_1") + signed_request("evt_2", secret="whsec_" + "A" * 43)

    for start in range(0, len(stream), 37):  # whatever the TCP segments are
        protocol.data_received(stream[start : start + 37])

    assert bytes(transport.written) == NO_CONTENT * 2  # an invalid one is answered too
    assert received.requests == 2
    assert received.invalid == 1
    assert [(entry[0], entry[2]) for entry in received.entries] == [
        ("evt_1", CREATED),
        ("evt_2", None),
    ]
    assert orjson.loads(received.stats()) == {"requests": 2, "unique": 2, "invalid": 1}


def test_deliveries_are_matched_with_the_events() -> None:
    entries = [
        ["evt_a", CREATED_EPOCH + 0.010, CREATED],
        ["evt_b", CREATED_EPOCH + 0.030, CREATED],
        ["evt_a", CREATED_EPOCH + 5.0, CREATED],  # a resend: the first arrival counts
        ["evt_x", CREATED_EPOCH + 0.5, CREATED],  # not an event of this database
    ]

    result = delivery_result(
        ["evt_a", "evt_b", "evt_c"], entries, requests=4, invalid=0, waited_s=1.23
    )

    assert (result.events, result.delivered, result.undelivered) == (3, 2, 1)
    assert (result.duplicates, result.unknown, result.received_requests) == (1, 1, 4)
    assert result.missing_sample == ("evt_c",)
    assert result.lag_ms.p50 == pytest.approx(10.0, abs=0.01)
    assert result.lag_ms.p99 == pytest.approx(30.0, abs=0.01)
    assert result.lag_ms.max == pytest.approx(30.0, abs=0.01)
    assert result.waited_s == 1.2
    assert [target.met for target in result.targets] == [False, True]
    assert result.targets[0].value == "2 of 3"


def test_all_delivered_meets_the_targets() -> None:
    result = delivery_result(
        ["evt_a"], [["evt_a", CREATED_EPOCH + 0.2, CREATED]], requests=1, invalid=0, waited_s=0
    )

    assert all(target.met for target in result.targets)


def test_nearest_rank_percentiles() -> None:
    values = [float(v) for v in range(1, 101)]

    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values[:1], 99) == 1.0
    assert percentile([], 50) == 0.0


def sample_delivery() -> WebhookDelivery:
    entries = [[f"evt_{i}", CREATED_EPOCH + i / 1000, CREATED] for i in range(1, 1001)]
    entries.append(["evt_7", CREATED_EPOCH + 9, CREATED])
    return delivery_result(
        [f"evt_{i}" for i in range(1, 1001)], entries, requests=1001, invalid=0, waited_s=2.0
    )


def with_webhooks(report: Report) -> Report:
    return dataclasses.replace(report, webhooks=sample_delivery())


def test_the_webhook_section_of_the_report(soak_report: Report) -> None:
    lines = render_markdown(with_webhooks(soak_report)).splitlines()

    start = lines.index("### Webhooks (issue 11)")
    assert lines.index("### Nothing lost") < start < lines.index("### Memory (VmRSS, MiB)")
    assert lines[start + 2].startswith(
        "Every gateway run above had 1 endpoint of the first demo merchant subscribed to every "
        'event type (`enabled_events: ["*"]`), at a local receiver that answers 204 and '
        "verified all signatures with `standardwebhooks`. After the runs and the integrity "
        "check it took 2.0 s more"
    )
    assert "| 1,000 | 1,000 | 0 | 1,001 | 1 | 0 | 0 | 500 | 990 | 1000 | 500 |" in lines
    assert "| every event delivered by the end of the run (undelivered = 0) | 1,000 of 1,000 " in (
        "\n".join(lines)
    )


def test_the_webhook_section_names_the_runs_without_an_endpoint(soak_report: Report) -> None:
    without = [
        dataclasses.replace(run, name=f"{WITHOUT_WEBHOOKS} c{run.connections}")
        for run in soak_report.runs[:2]
    ]
    report = dataclasses.replace(with_webhooks(soak_report), runs=(*soak_report.runs, *without))

    lines = render_markdown(report).splitlines()

    start = lines.index("### Webhooks (issue 11)")
    assert lines[start + 2].startswith(
        "Every gateway run above but 2 without webhooks had 1 endpoint of the first demo merchant"
    )


def test_undelivered_events_are_named(soak_report: Report) -> None:
    delivery = delivery_result(
        ["evt_a", "evt_b"], [["evt_a", CREATED_EPOCH, CREATED]], requests=1, invalid=0, waited_s=60
    )

    markdown = render_markdown(dataclasses.replace(soak_report, webhooks=delivery))

    assert "Undelivered, for example: `evt_b`" in markdown
    assert "| 1 of 2 | **no** |" in markdown


def test_a_report_with_webhooks_is_written_back_exactly(soak_report: Report) -> None:
    report = with_webhooks(soak_report)

    text = report_to_json(report)

    assert report_from_json(text) == report
    assert report_to_json(report_from_json(text)) == text
    assert '"webhooks": {' in text
    assert '"webhooks"' not in report_to_json(soak_report)  # old results stay as they were


@pytest.mark.parametrize("path", STORED_JSON, ids=lambda path: path.name)
def test_a_stored_webhook_section_has_the_targets_its_counts_give(path: Path) -> None:
    webhooks = load_report(path).webhooks
    if webhooks is None:
        pytest.skip("a result from before issue 11")

    assert webhooks.targets == delivery_targets(webhooks)
