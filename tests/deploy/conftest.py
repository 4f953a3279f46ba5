"""Shared fixtures for the operator-file tests (Dockerfiles, docker-compose.yaml, deployments/).

Everything here runs offline: no Docker engine, no cluster, no network. The facts the operator
files must agree with (settings, secrets, routes, UID) are stated once below; the tests compare
every file against them, and against the applications themselves where those can be imported.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import yaml
from bank_simulator.app import create_app as create_bank_app
from bank_simulator.config import Settings as BankSettings
from payment_gateway.bank.http import HttpBankAdapter
from payment_gateway.config import Settings as GatewaySettings
from payment_gateway.domain.bank import BankAnswer, BankFault
from pydantic_settings import BaseSettings

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Facts:
    """What the operator files must agree with, stated once.

    Test modules get this through the `facts` fixture: under `--import-mode=importlib` they
    cannot import from conftest.py.
    """

    repo_root: Path = REPO_ROOT
    # Gateway settings read from the environment (docs/design.md, Configuration).
    gateway_secret_settings: frozenset[str] = frozenset(
        {"DATABASE_URL", "CARD_ENCRYPTION_KEYS", "IDEMPOTENCY_HASH_KEY", "BANK_API_KEY"}
    )
    gateway_plain_settings: frozenset[str] = frozenset(
        {
            "BANK_URL",
            # Production refuses a plain-http BANK_URL without it (the in-cluster simulator).
            "BANK_ALLOW_INSECURE",
            "BANK_TIMEOUT_SECONDS",
            "RECONCILE_INTERVAL_SECONDS",
            "RECONCILE_NOT_FOUND_GRACE_SECONDS",
            "IDEMPOTENCY_TTL_SECONDS",
            "AUTO_MIGRATE",
            "DEMO_MERCHANTS",
            "APP_ENV",
            "LOG_LEVEL",
            "LOG_FORMAT",
            # Not in the list, but a setting: replicas x pool must fit max_connections.
            "DATABASE_POOL_SIZE",
            # Rate-limit counters (Redis) and the separate Prometheus port.
            "REDIS_URL",
            "METRICS_HOST",
            "METRICS_PORT",
            # Webhooks: stated in production so that private URLs stay refused.
            "WEBHOOK_ALLOW_PRIVATE_URLS",
            "WEBHOOK_TIMEOUT_SECONDS",
            # Where the bank sends shoppers back after 3-D Secure (https in production).
            "PUBLIC_URL",
            "BANK_PUBLIC_URL",
        }
    )
    # The port the gateway serves Prometheus /metrics on (METRICS_PORT's default), never 8080.
    gateway_metrics_port: int = 9464
    redis_port: int = 6379
    # Read by uvicorn itself, not by the application.
    uvicorn_settings: frozenset[str] = frozenset({"WEB_CONCURRENCY", "FORWARDED_ALLOW_IPS"})
    bank_settings: frozenset[str] = frozenset(
        {"PENDING_SETTLE_SECONDS", "LATENCY_MS", "FAILURE_RATE", "MAX_TRANSACTIONS", "BANK_API_KEY"}
    )
    # The one secret the bank simulator reads: the gateway's bearer key, from the same Secret.
    bank_secret_settings: frozenset[str] = frozenset({"BANK_API_KEY"})
    # The documented health routes (docs/design.md, Operations). When the apps can be
    # imported, the probe paths are also checked against the routes they really serve.
    gateway_health_routes: frozenset[str] = frozenset({"/healthz", "/readyz"})
    bank_health_routes: frozenset[str] = frozenset({"/healthz"})
    gateway_port: int = 8080
    bank_port: int = 8081
    # The non-root user baked into both images and required by the Kubernetes securityContext.
    app_uid: int = 10001
    secret_name: str = "payment-gateway-secrets"

    @property
    def gateway_settings(self) -> frozenset[str]:
        return self.gateway_secret_settings | self.gateway_plain_settings


SERVICES = ("payment_gateway", "bank_simulator")


@pytest.fixture(scope="session")
def facts() -> Facts:
    return Facts()


@pytest.fixture(scope="session")
def load_yaml() -> Callable[[Path], list[dict[str, Any]]]:
    return load_yaml_documents


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    """All non-empty documents of a (multi-document) YAML file."""
    with path.open(encoding="utf-8") as stream:
        return [doc for doc in yaml.safe_load_all(stream) if doc is not None]


# --------------------------------------------------------------------------- Dockerfiles


@dataclass
class Instruction:
    keyword: str  # upper-case, e.g. "RUN"
    args: str  # everything after the keyword, continuation lines joined

    @property
    def flags(self) -> dict[str, str]:
        """Leading `--name=value` flags (COPY --from=..., HEALTHCHECK --interval=...)."""
        found: dict[str, str] = {}
        for word in self.args.split():
            if not word.startswith("--"):
                break
            name, _, value = word[2:].partition("=")
            found[name] = value
        return found

    @property
    def operands(self) -> list[str]:
        """The arguments after the leading flags: JSON (exec) form or shell words."""
        rest = self.args.split()
        while rest and rest[0].startswith("--"):
            rest.pop(0)
        text = " ".join(rest)
        if text.startswith("["):
            return list(json.loads(text))
        return shlex.split(text)


@dataclass
class Stage:
    base: str  # the FROM image with build ARG defaults substituted
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for instruction in self.all("ENV"):
            for word in shlex.split(instruction.args):
                key, _, value = word.partition("=")
                values[key] = value
        return values


def parse_dockerfile(path: Path) -> list[Stage]:
    """A deliberately small Dockerfile parser: comments, line continuations, stages, ARGs.

    Enough to check what these tests care about; it does not implement heredocs or escape
    directives (neither is used in this repository, and a test fails if one appears).
    """
    logical: list[str] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and pending):
            continue  # comments (and blank lines) may appear inside a continuation
        if not stripped:
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    assert not pending, f"{path}: dangling line continuation"

    build_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        args = args.strip()
        assert "<<" not in args, f"{path}: heredocs are not supported by this parser"
        if keyword == "ARG" and not stages:  # global ARGs usable in FROM
            name, _, default = args.partition("=")
            build_args[name] = default
            continue
        if keyword == "FROM":
            words = [w for w in args.split() if not w.startswith("--platform")]
            base = words[0]
            for name, default in build_args.items():
                base = base.replace(f"${{{name}}}", default).replace(f"${name}", default)
            alias = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=base, name=alias))
            continue
        assert stages, f"{path}: {keyword} before the first FROM"
        stages[-1].instructions.append(Instruction(keyword, args))
    return stages


@pytest.fixture(scope="session")
def dockerfile_parser() -> Callable[[Path], list[Stage]]:
    return parse_dockerfile


@pytest.fixture(scope="session")
def dockerfiles() -> dict[str, list[Stage]]:
    """service directory name -> parsed stages of its Dockerfile."""
    return {service: parse_dockerfile(REPO_ROOT / service / "Dockerfile") for service in SERVICES}


# --------------------------------------------------------------------------- uvicorn, app routes


def _uvicorn_option(command: list[str], option: str) -> str | None:
    """The value of `--option value` or `--option=value` in an argv list, else None."""
    for index, word in enumerate(command):
        if word == option:
            return command[index + 1]
        if word.startswith(option + "="):
            return word.split("=", 1)[1]
    return None


@pytest.fixture(scope="session")
def gateway_graceful_shutdown_seconds(dockerfiles: dict[str, list[Stage]]) -> int:
    """uvicorn's --timeout-graceful-shutdown in the gateway image's CMD."""
    cmd = dockerfiles["payment_gateway"][-1].all("CMD")[-1].operands
    value = _uvicorn_option(cmd, "--timeout-graceful-shutdown")
    assert value is not None, "the gateway CMD must bound its graceful shutdown"
    return int(value)


# Run in a child interpreter: building an app configures logging (and may read the environment),
# which must not leak into the other test suites sharing this pytest session.
_SERVED_PATHS_SCRIPT = """
import json, sys
try:
    module = __import__(sys.argv[1], fromlist=["_"])
except ImportError as exc:
    print(json.dumps({"import_error": repr(exc)}))
    raise SystemExit(0)
from starlette.routing import Match
app = module.create_app() if hasattr(module, "create_app") else module.app
def served(path):
    scope = {"type": "http", "method": "GET", "path": path, "root_path": "",
             "query_string": b"", "headers": []}
    # Ask the router itself: works however routes are included or mounted.
    return any(route.matches(scope)[0] == Match.FULL for route in app.router.routes)
print(json.dumps({"served": [p for p in sys.argv[2:] if served(p)]}))
"""


def _served_paths(module_name: str, paths: Iterable[str]) -> set[str]:
    """Which of `paths` the app in `module_name` answers a GET for.

    Skips the calling test if the module cannot be imported yet.
    """
    candidates = [*paths, "/this-path-is-not-served"]
    result = subprocess.run(
        [sys.executable, "-c", _SERVED_PATHS_SCRIPT, module_name, *candidates],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tempfile.gettempdir(),
    )
    assert result.returncode == 0, f"building {module_name}'s app failed:\n{result.stderr}"
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    if "import_error" in answer:
        pytest.skip(f"{module_name} is not importable yet: {answer['import_error']}")
    served = set(answer["served"])
    assert "/this-path-is-not-served" not in served, "route matching is broken"
    return served


@pytest.fixture(scope="session")
def served_paths() -> Callable[[str, Iterable[str]], set[str]]:
    return _served_paths


@pytest.fixture(scope="session")
def uvicorn_option() -> Callable[[list[str], str], str | None]:
    return _uvicorn_option


# --------------------------------------------------------------------------- start-up settings

SettingsT = TypeVar("SettingsT", bound=BaseSettings)


@pytest.fixture
def settings_from_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[[type[SettingsT], Mapping[str, str]], SettingsT]:
    """Builds a settings class the way the process would at start-up: from os.environ.

    The class's own variables are first removed from the test's environment, so only the
    environment under test is seen (names are case-insensitive to pydantic-settings).
    """

    def build(settings_class: type[SettingsT], environment: Mapping[str, str]) -> SettingsT:
        fields = {name.lower() for name in settings_class.model_fields}
        for name in list(os.environ):
            if name.lower() in fields:
                monkeypatch.delenv(name)
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        return settings_class()

    return build


async def _gateway_inquiry_at_the_bank(
    gateway: GatewaySettings, bank: BankSettings
) -> BankAnswer | BankFault | None:
    """An inquiry by the gateway's own bank adapter, built from `gateway`, answered in process
    by the bank simulator app built from `bank`.

    None is the bank's 404 for an unknown deposit: the request got past its key check. A 401
    (wrong or missing key) comes back as BankFault.UNCERTAIN.
    """
    adapter = HttpBankAdapter(
        gateway.bank_url,
        gateway.bank_timeout_seconds,
        api_key=gateway.bank_api_key.get_secret_value() or None,
        transport=httpx.ASGITransport(app=create_bank_app(bank)),
    )
    try:
        return await adapter.inquire("deploy-test-unknown-payment")
    finally:
        await adapter.aclose()


@pytest.fixture(scope="session")
def gateway_inquiry_at_the_bank() -> Callable[
    [GatewaySettings, BankSettings], Awaitable[BankAnswer | BankFault | None]
]:
    return _gateway_inquiry_at_the_bank
