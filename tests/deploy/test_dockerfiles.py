"""The two Dockerfiles and the root .dockerignore, checked without a Docker engine.

The Dockerfiles are parsed by the small parser in conftest.py; .dockerignore is evaluated with
Docker's rules (Go filepath.Match patterns plus `**`, later lines win, `!` re-includes, a pattern
matching a parent directory excludes everything under it).
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVICES = {
    # service dir: (distribution name, ASGI app, port)
    "payment_gateway": ("payment-gateway", "payment_gateway.main:app", 8080),
    "bank_simulator": ("bank-simulator", "bank_simulator.main:app", 8081),
}
# Ports each image documents with EXPOSE: the API port first, then any other listener.
EXPOSED_PORTS = {"payment_gateway": [8080, 9464], "bank_simulator": [8081]}
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
BUILD_TOOLS = re.compile(r"\b(build-essential|gcc|g\+\+|clang|make|libc6?-dev|python3?-dev)\b")


@pytest.fixture(params=sorted(SERVICES))
def service(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


def _final(dockerfiles: dict[str, Any], service: str) -> Any:
    return dockerfiles[service][-1]


# --------------------------------------------------------------------------- .dockerignore


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """Docker's pattern syntax (Go filepath.Match + `**`) as a regex on slash-separated paths."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + "[" + pattern[i + 1 : end].replace("^", "\\^", 1) + "]", end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


@cache
def _dockerignore_rules() -> tuple[tuple[bool, re.Pattern[str]], ...]:
    rules = []
    for line in (REPO_ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line.lstrip("!").strip().strip("/")
        rules.append((negated, _pattern_regex(pattern)))
    return tuple(rules)


def is_excluded(path: str) -> bool:
    """Would Docker leave `path` (relative to the context root) out of the build context?"""
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for negated, regex in _dockerignore_rules():
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            excluded = not negated
    return excluded


def test_dockerignore_matcher_follows_docker_rules() -> None:
    """Guards the matcher itself with cases whose answer is known."""
    assert _pattern_regex("**/__pycache__").fullmatch("a/b/__pycache__")
    assert _pattern_regex("**/__pycache__").fullmatch("__pycache__")
    assert not _pattern_regex("*").fullmatch("a/b")
    assert _pattern_regex("*.py[cod]").fullmatch("x.pyc")


@pytest.mark.parametrize(
    "path",
    [
        ".venv/bin/python",
        ".git/config",
        ".env",
        "var/gateway.db",
        "payment_gateway/tests/test_x.py",
        "bank_simulator/tests/test_x.py",
        "tests/deploy/test_dockerfiles.py",
        "payment_gateway/src/payment_gateway/__pycache__/main.cpython-311.pyc",
        ".pytest_cache/v/cache",
        ".mypy_cache/3.11/x.json",
        ".ruff_cache/x",
        "deployments/secret.example.yaml",
        "docker-compose.yaml",
    ],
)
def test_dockerignore_keeps_out(path: str) -> None:
    assert is_excluded(path)


def test_dockerignore_keeps_every_copied_source(dockerfiles: dict[str, Any], service: str) -> None:
    for stage in dockerfiles[service]:
        for copy in stage.all("COPY") + stage.all("ADD"):
            if "from" in copy.flags:
                continue
            for source in copy.operands[:-1]:
                assert not is_excluded(source), f"{service}: COPY {source} is dockerignored"
                # Files inside copied directories must come along too.
                if (REPO_ROOT / source).is_dir():
                    for file in (REPO_ROOT / source).rglob("*.py"):
                        if "__pycache__" in file.parts:
                            continue
                        relative = file.relative_to(REPO_ROOT).as_posix()
                        assert not is_excluded(relative), relative


# --------------------------------------------------------------------------- base images


def test_every_base_image_is_pinned_by_digest(dockerfiles: dict[str, Any], service: str) -> None:
    """A tag can be re-pointed (rebuilt base, or a compromised registry account); a digest not."""
    for stage in dockerfiles[service]:
        assert DIGEST.search(stage.base), f"{service}: FROM {stage.base} has no @sha256: digest"
        name, _, _ = stage.base.partition("@")
        assert ":" in name, f"{service}: keep the tag next to the digest for readers"


def test_digest_check_rejects_a_tag_only_base(tmp_path: Path, dockerfile_parser: Any) -> None:
    """Guards the test above against a parser that would drop the digest or the ARG default."""
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("ARG BASE=python:3.11-slim\nFROM ${BASE} AS final\nUSER 1:1\n")
    (stage,) = dockerfile_parser(dockerfile)
    assert stage.base == "python:3.11-slim"
    assert not DIGEST.search(stage.base)


# --------------------------------------------------------------------------- builder


def test_copy_sources_exist(dockerfiles: dict[str, Any], service: str) -> None:
    stage_names = {stage.name for stage in dockerfiles[service]}
    for stage in dockerfiles[service]:
        for copy in stage.all("COPY") + stage.all("ADD"):
            if "from" in copy.flags:
                assert copy.flags["from"] in stage_names, "COPY --from an unknown stage"
                continue
            *sources, _destination = copy.operands
            assert sources
            for source in sources:
                assert (REPO_ROOT / source).exists(), f"{service}: COPY {source}: no such path"


def test_builder_installs_the_locked_service_only(
    dockerfiles: dict[str, Any], service: str
) -> None:
    distribution = SERVICES[service][0]
    project = tomllib.loads((REPO_ROOT / service / "pyproject.toml").read_text("utf-8"))
    assert project["project"]["name"] == distribution

    stages = dockerfiles[service]
    assert len(stages) >= 2, "multi-stage: build tools stay in the builder"
    builder = stages[0]
    runs = [run.args for run in builder.all("RUN")]
    assert any(re.search(r"pip install [^&]*\buv==\d+\.\d+\.\d+\b", run) for run in runs), "pin uv"
    syncs = [shlex.split(run.split("uv sync", 1)[1]) for run in runs if "uv sync" in run]
    assert syncs
    for options in syncs:
        assert "--frozen" in options, "install exactly what uv.lock says"
        assert "--no-dev" in options
        assert "--no-editable" in options, "the venv must not point back into the sources"
        assert options[options.index("--package") + 1] == distribution
    # The workspace lock needs the root and every member's pyproject.toml.
    copied = {src for copy in builder.all("COPY") for src in copy.operands[:-1]}
    assert {"uv.lock", "pyproject.toml"} <= copied
    assert {f"{name}/pyproject.toml" for name in SERVICES} <= copied
    assert f"{service}/src" in copied
    assert builder.env()["UV_PROJECT_ENVIRONMENT"] == "/app/.venv"


# --------------------------------------------------------------------------- final stage


def test_final_stage_is_slim_python_with_only_the_venv(
    dockerfiles: dict[str, Any], service: str
) -> None:
    stages = dockerfiles[service]
    final = stages[-1]
    assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?@sha256:[0-9a-f]{64}", final.base)
    # Same interpreter path as the builder, or the venv's python link would dangle.
    assert final.base == stages[0].base
    copies = final.all("COPY") + final.all("ADD")
    assert copies, "the final stage must get the venv from the builder"
    for copy in copies:
        assert copy.flags.get("from") == stages[0].name, "final stage copies from the builder only"
        assert copy.operands == ["/app/.venv", "/app/.venv"]


def test_no_build_tools_in_the_final_stage(dockerfiles: dict[str, Any], service: str) -> None:
    for run in _final(dockerfiles, service).all("RUN"):
        assert not BUILD_TOOLS.search(run.args), run.args
        assert "pip install" not in run.args, run.args
        assert "uv " not in run.args, run.args
        assert "apt-get install" not in run.args, "keep the final image to the base + venv"


def test_final_stage_runs_as_a_numeric_non_root_user(
    dockerfiles: dict[str, Any], service: str, facts: Any
) -> None:
    users = _final(dockerfiles, service).all("USER")
    assert users, "USER missing in the final stage"
    uid, _, gid = users[-1].args.partition(":")
    # Numeric, so Kubernetes runAsNonRoot can verify it; the same UID the manifests require.
    assert uid.isdigit()
    assert int(uid) == facts.app_uid != 0
    if gid:
        assert gid.isdigit()
        assert int(gid) != 0


def test_python_runtime_environment(dockerfiles: dict[str, Any], service: str) -> None:
    env = _final(dockerfiles, service).env()
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["PATH"].startswith("/app/.venv/bin:")


def test_healthcheck_probes_healthz_with_python(
    dockerfiles: dict[str, Any], service: str, facts: Any
) -> None:
    final = _final(dockerfiles, service)
    (healthcheck,) = final.all("HEALTHCHECK")
    port = SERVICES[service][2]
    exposed = [int(p.split("/")[0]) for e in final.all("EXPOSE") for p in e.args.split()]
    assert exposed == EXPOSED_PORTS[service]
    assert exposed[0] == port
    # Flags, then `CMD [...]` in exec form.
    command = healthcheck.args.split("CMD", 1)[1].strip()
    argv = json.loads(command) if command.startswith("[") else shlex.split(command)
    assert argv[0] == "python", "no curl/wget in slim images"
    url = re.search(r"https?://[^'\"\s]+", " ".join(argv))
    assert url is not None
    health_routes = {
        "payment_gateway": facts.gateway_health_routes,
        "bank_simulator": facts.bank_health_routes,
    }[service]
    host_port, _, path = url.group(0).removeprefix("http://").partition("/")
    assert host_port == f"127.0.0.1:{port}"
    # Liveness, not readiness: a database outage must not mark the container unhealthy.
    assert "/" + path == "/healthz"
    assert "/healthz" in health_routes
    for flag in ("interval", "timeout", "start-period", "retries"):
        assert flag in healthcheck.flags, flag


def test_cmd_runs_uvicorn_for_production(
    dockerfiles: dict[str, Any], service: str, uvicorn_option: Any
) -> None:
    final = _final(dockerfiles, service)
    (cmd,) = final.all("CMD")
    assert cmd.args.startswith("["), "exec form: uvicorn is PID 1 and receives SIGTERM"
    argv = cmd.operands
    _, app, port = SERVICES[service]
    assert argv[:2] == ["uvicorn", app]
    assert uvicorn_option(argv, "--host") == "0.0.0.0"
    assert uvicorn_option(argv, "--port") == str(port)
    assert "--proxy-headers" in argv
    assert uvicorn_option(argv, "--timeout-graceful-shutdown") is not None
    assert "--reload" not in argv
    env = final.env()
    # From the environment, so each deployment sets its own proxy's addresses (a CLI flag would
    # win over the variable); by default only loopback may set X-Forwarded-*, never any peer.
    assert uvicorn_option(argv, "--forwarded-allow-ips") is None
    assert env["FORWARDED_ALLOW_IPS"] == "127.0.0.1"
    if service == "payment_gateway":
        # Worker count from the environment (WEB_CONCURRENCY, read by uvicorn), default 2.
        assert uvicorn_option(argv, "--workers") is None
        assert env["WEB_CONCURRENCY"] == "2"
        assert int(uvicorn_option(argv, "--timeout-graceful-shutdown") or 0) >= 10
    else:
        # In-memory state: one process, whatever the environment says.
        assert uvicorn_option(argv, "--workers") == "1"
