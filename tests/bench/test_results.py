"""The stored JSON results load into the typed report and are written back byte for byte."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from bench.results import Report, report_from_json, report_to_json
from tests.bench.fair_use_sample import fair_use_run, with_fair_use
from tests.bench.stored_results import SOAK_RESULT, STORED_JSON


def test_there_are_stored_results_to_check() -> None:
    names = {path.name for path in STORED_JSON}
    assert {"latest.json", "20261125T193552Z.json", "20261125T222858Z.json"} <= names


@pytest.mark.parametrize("path", STORED_JSON, ids=lambda path: path.name)
def test_a_stored_result_is_written_back_exactly_as_stored(path: Path) -> None:
    text = path.read_text()

    assert report_to_json(report_from_json(text)) == text


def test_a_result_loads_into_typed_records(soak_report: Report) -> None:
    headline = soak_report.runs[1]

    assert headline.name == "gateway 4242 c64"
    assert headline.latency_ms.p99 == pytest.approx(74.899)
    assert headline.latency_ms.p99_9 == pytest.approx(104.352)  # "p99.9" in the JSON
    assert soak_report.options.soak == 120
    assert soak_report.integrity is not None
    assert soak_report.integrity.verdict == "ok"
    assert soak_report.logs[1].messages[0].count == 1


def test_a_result_with_an_unknown_verdict_is_rejected(soak_report: Report) -> None:
    data = json.loads(report_to_json(soak_report))
    data["integrity"]["verdict"] = "probably fine"

    with pytest.raises(ValidationError, match="verdict"):
        report_from_json(json.dumps(data))


def test_a_result_missing_a_field_is_rejected(soak_report: Report) -> None:
    data = json.loads(report_to_json(soak_report))
    del data["runs"][0]["per_second"]

    with pytest.raises(ValidationError, match="per_second"):
        report_from_json(json.dumps(data))


def test_a_result_from_before_the_fair_use_run_loads_without_it(soak_report: Report) -> None:
    assert "fair_use" not in SOAK_RESULT.read_text()

    assert soak_report.fair_use is None
    assert soak_report.options.only is None


def test_a_fair_use_result_is_written_and_read_back_typed(soak_report: Report) -> None:
    report = with_fair_use(soak_report, fair_use_run("memory"), fair_use_run("redis"))

    text = report_to_json(report)
    loaded = report_from_json(text)

    data = json.loads(text)
    assert list(data)[-1] == "fair_use"  # the newest section, after every older key
    assert data["fair_use"]["runs"][1]["flooder"]["statuses"] == {"201": 3600, "429": 18000}
    assert data["fair_use"]["runs"][0]["quiet"]["latency_ms"]["p99.9"] == pytest.approx(39.0)
    assert loaded == report
    assert loaded.fair_use is not None
    assert loaded.fair_use.runs[1].storage == "redis"
    assert loaded.fair_use.targets[0].met


def test_a_fair_use_run_with_an_unknown_storage_is_rejected(soak_report: Report) -> None:
    data = json.loads(report_to_json(with_fair_use(soak_report, fair_use_run())))
    data["fair_use"]["runs"][0]["storage"] = "memcached"

    with pytest.raises(ValidationError, match="storage"):
        report_from_json(json.dumps(data))
