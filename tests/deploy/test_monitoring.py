"""The Grafana dashboard queries metrics the services really export.

Every PromQL expression of deployments/monitoring/grafana/dashboards/*.json is parsed (a syntax
error fails here, not on a blank panel), and each metric it selects must be in the Prometheus
registry of the gateway or the bank simulator, as the exposition format names it (a counter
`x` is scraped as `x_total`, a histogram as `x_bucket`/`x_sum`/`x_count`).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml

MONITORING = Path(__file__).resolve().parents[2] / "deployments" / "monitoring"
DASHBOARDS = sorted((MONITORING / "grafana" / "dashboards").glob("*.json"))

# Suffixes the exposition format adds, by metric type.
_SAMPLE_SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
    "untyped": ("",),
    "info": ("_info",),
    "stateset": ("",),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
}

# Imports both apps' modules (so every metric object is registered) and drives one request of
# each kind through the simulator, in a child interpreter: building the simulator app reads the
# environment and configures logging, which must not leak into this pytest session.
_REGISTRY_SCRIPT = """
import asyncio, json
import httpx
import payment_gateway.main  # noqa: F401  (metrics register on import; the app is built lazily)
import bank_simulator.main
from prometheus_client import REGISTRY

async def exercise():
    transport = httpx.ASGITransport(app=bank_simulator.main.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bank") as client:
        card = {"number": "4242424242424242", "expiry": "12/2042", "cvv": "123",
                "holder_name": "Test"}
        body = {"reference": "r-1", "card": card, "amount": 100, "currency": "USD"}
        assert (await client.post("/api/v1/deposit", json=body)).status_code == 201
        assert (await client.get("/api/v1/deposits/r-1")).status_code == 200

asyncio.run(exercise())
families = {}
for family in REGISTRY.collect():
    labels = sorted({k for s in family.samples for k in s.labels if k not in ("le", "quantile")})
    families[family.name] = {"type": family.type, "labels": labels, "sampled": bool(family.samples)}
print(json.dumps(families))
"""


@cache
def _registry() -> dict[str, dict[str, Any]]:
    """family name -> {type, labels seen in samples, sampled} for both services."""
    result = subprocess.run(
        [sys.executable, "-c", _REGISTRY_SCRIPT],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tempfile.gettempdir(),
    )
    assert result.returncode == 0, result.stderr
    families: dict[str, dict[str, Any]] = json.loads(result.stdout.strip().splitlines()[-1])
    return families


def _scraped_names() -> dict[str, str]:
    """Every series name a scrape can return -> the family it belongs to."""
    return {
        family + suffix: family
        for family, info in _registry().items()
        for suffix in _SAMPLE_SUFFIXES[info["type"]]
    }


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])  # collapsed rows hold their panels


def _expressions() -> list[tuple[str, str]]:
    """(where, PromQL) for every query of every dashboard."""
    found = []
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        for panel in _panels(dashboard):
            for target in panel.get("targets", []):
                if target.get("expr"):
                    found.append((f"{path.name}: {panel['title']}", target["expr"]))
    return found


def _selected(expr: str) -> tuple[set[str], dict[str, set[str]]]:
    """The metric names an expression selects, and the `by (...)` labels applied to each."""
    names: set[str] = set()
    grouping: dict[str, set[str]] = {}

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            names.add(node.name)
        if (
            isinstance(node, promql_parser.AggregateExpr)
            and node.modifier is not None
            and node.modifier.type == promql_parser.AggModifierType.By
        ):
            inner, _ = _selected(str(node.expr))
            for name in inner:
                grouping.setdefault(name, set()).update(node.modifier.labels)

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names, grouping


def _queried_metrics() -> list[str]:
    return sorted({name for _, expr in _expressions() for name in _selected(expr)[0]})


def _metric_params() -> list[Any]:
    return list(_queried_metrics())


def test_there_is_a_dashboard_with_the_operations_panels() -> None:
    assert DASHBOARDS, "no dashboard JSON"
    queried = set(_queried_metrics())
    assert {
        "gateway_payments_total",
        "gateway_bank_call_duration_seconds_bucket",
        "gateway_reconciler_oldest_open_payment_age_seconds",
        "gateway_rate_limited_requests_total",
        "bank_deposits_total",
    } <= queried


@pytest.mark.parametrize(("where", "expr"), _expressions())
def test_every_query_parses(where: str, expr: str) -> None:
    promql_parser.parse(expr)  # raises on a syntax error


@pytest.mark.parametrize("metric", _metric_params())
def test_every_queried_metric_is_exported(metric: str) -> None:
    scraped = _scraped_names()
    assert metric in scraped, f"{metric} is exported by neither service"


def test_queries_use_only_labels_the_metrics_carry() -> None:
    """Where a family has samples here (the simulator's, after real requests), its labels are
    known: a `by (...)` label it does not carry would show one unlabelled series."""
    scraped, registry = _scraped_names(), _registry()
    checked = 0
    for where, expr in _expressions():
        for name, labels in _selected(expr)[1].items():
            info = registry.get(scraped.get(name, ""))
            if info is None or not info["sampled"]:
                continue
            checked += 1
            assert labels - {"le"} <= set(info["labels"]), f"{where}: {expr}"
    assert checked, "no query was checked against real samples"


def test_no_query_breaks_down_by_merchant() -> None:
    """The merchant label is not exported (one series per merchant would not scale)."""
    for where, expr in _expressions():
        _, grouping = _selected(expr)
        assert all("merchant" not in labels for labels in grouping.values()), where
        assert "merchant" not in expr, where


def test_exposition_names_follow_the_metric_type() -> None:
    """Guards the name mapping the tests above rely on, with metrics whose names are known."""
    scraped = _scraped_names()
    assert scraped["bank_deposits_total"] == "bank_deposits"
    assert "bank_deposits" not in scraped
    assert scraped["bank_http_request_duration_seconds_bucket"] == (
        "bank_http_request_duration_seconds"
    )
    assert "bank_http_request_duration_seconds" not in scraped


def test_panels_use_the_provisioned_datasource() -> None:
    datasources = (MONITORING / "grafana" / "provisioning" / "datasources").glob("*.yaml")
    uids = {
        ds["uid"]
        for path in datasources
        for ds in yaml.safe_load(path.read_text(encoding="utf-8"))["datasources"]
    }
    for path in DASHBOARDS:
        for panel in _panels(json.loads(path.read_text(encoding="utf-8"))):
            refs = [panel.get("datasource")] + [t.get("datasource") for t in panel["targets"]]
            for ref in refs:
                assert ref is not None, f"{path.name}: {panel['title']}"
                assert ref["uid"] in uids, f"{path.name}: {panel['title']}"
