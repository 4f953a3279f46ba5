"""payment.http and deposit.http, run in a real client (httpyac) against both services as real
processes: every request runs, every handler's assertions pass, and every route has a request."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import BANK_API_KEY, Stack

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[3]
HTTPYAC = REPO / "tools" / "httpyac" / "node_modules" / ".bin" / "httpyac"
IN_CI = os.environ.get("CI", "").lower() == "true"
# A request line of a .http file: what httpyac should report as one request run.
REQUEST_LINE = re.compile(r"^(GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS) \S", re.MULTILINE)


@dataclass(frozen=True)
class RequestFile:
    name: str
    service: str  # the Stack attribute serving it, and the file's variable for its base URL


REQUEST_FILES = [RequestFile("payment.http", "gateway"), RequestFile("deposit.http", "bank")]


@pytest.fixture(scope="module")
def httpyac() -> Path:
    """The pinned httpyac that `make install` puts under tools/httpyac (`npm ci`)."""
    if shutil.which("node") is None:
        reason = "Node.js is missing: `apt-get install nodejs npm`, then `make install`"
    elif not HTTPYAC.exists():
        reason = f"httpyac is not installed at {HTTPYAC}: run `make install` (needs npm)"
    else:
        return HTTPYAC
    if IN_CI:
        pytest.fail(reason)  # CI must run the request files, never skip them
    pytest.skip(reason)


def run_request_file(httpyac: Path, request_file: RequestFile, url: str) -> dict[str, Any]:
    """Every request of the file, in order; httpyac's JSON report of them."""
    # The report goes to a file, not a pipe: Node exits before a large piped report is
    # written out whole (anything past the pipe's 64 KiB buffer would be lost).
    with tempfile.TemporaryFile() as out:
        completed = subprocess.run(
            [
                *(str(httpyac), "send", request_file.name, "--all", "--json"),
                *("--var", f"{request_file.service}={url}"),  # no environment: only this URL
                *("--var", f"bank_api_key={BANK_API_KEY}"),  # the stack's bank requires it
            ],
            cwd=REPO,  # httpyac only takes files under its working directory
            stdout=out,
            stderr=subprocess.PIPE,
            text=True,
            timeout=90,
            check=False,
        )
        out.seek(0)
        stdout = out.read().decode()
    try:
        report: dict[str, Any] = json.loads(stdout)
    except json.JSONDecodeError:
        pytest.fail(f"httpyac exited {completed.returncode} without a report:\n{completed.stderr}")
    report["exit_code"] = completed.returncode
    return report


def failures(report: dict[str, Any]) -> list[str]:
    """Each test that did not pass, and each request without a test, named by its line."""
    found = []
    for request in report["requests"]:
        where = f"line {request['line']} ({request['name']})"
        tests = request.get("testResults") or []
        if not tests:
            found.append(f"{where}: no client.test asserts its answer")
        found.extend(
            f"{where}: {test['message']}: {test.get('error', {}).get('message', test['status'])}"
            for test in tests
            if test["status"] != "SUCCESS"
        )
    return found


def path_pattern(template: str) -> re.Pattern[str]:
    """An OpenAPI path template as a regular expression, e.g. /payments/{id} → /payments/[^/]+."""
    return re.compile(re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)) + r"$")


def routes_not_requested(openapi: dict[str, Any], report: dict[str, Any]) -> list[str]:
    sent = [
        (request["response"]["request"]["method"], httpx.URL(request["response"]["request"]["url"]))
        for request in report["requests"]
        if "response" in request
    ]
    return [
        f"{method.upper()} {path}"
        for path, operations in openapi["paths"].items()
        for method in operations
        if not any(
            sent_method == method.upper() and path_pattern(path).match(url.path)
            for sent_method, url in sent
        )
    ]


@dataclass(frozen=True)
class Run:
    file: RequestFile
    service_url: str
    report: dict[str, Any]


@pytest.fixture(scope="module", params=REQUEST_FILES, ids=lambda file: file.name)
def run(request: pytest.FixtureRequest, httpyac: Path, stack: Stack) -> Run:
    """One run of the whole file against its freshly started service (httpyac first: no
    services are started only to skip)."""
    request_file: RequestFile = request.param
    service_url = getattr(stack, request_file.service).url
    report = run_request_file(httpyac, request_file, service_url)
    return Run(request_file, service_url, report)


def test_every_request_runs_and_gets_the_answer_it_asserts(run: Run) -> None:
    in_file = len(REQUEST_LINE.findall((REPO / run.file.name).read_text()))
    assert in_file > 0, f"{run.file.name} has no requests"
    # A file that silently runs fewer requests (or none) than it has fails here.
    assert run.report["summary"]["totalRequests"] == in_file, run.report["summary"]
    assert failures(run.report) == []
    assert run.report["summary"]["successRequests"] == in_file, run.report["summary"]
    assert run.report["exit_code"] == 0


def test_every_route_has_a_request(run: Run) -> None:
    openapi = httpx.get(f"{run.service_url}/openapi.json", timeout=10).json()

    assert routes_not_requested(openapi, run.report) == []
