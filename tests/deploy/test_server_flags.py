"""Every launcher runs each app with the server flags that README.md lists (Server flags).

The list lives once, in README.md; these tests read it and compare the Makefile, both
Dockerfiles, the Kubernetes deployments, the e2e tests' launcher and the benchmark against it.
"""

from __future__ import annotations

import ast
import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from uvicorn.main import main as uvicorn_cli

REPO_ROOT = Path(__file__).resolve().parents[2]
GATEWAY_APP = "payment_gateway.main:app"
BANK_APP = "bank_simulator.main:app"
DOCKERFILE_OF = {GATEWAY_APP: "payment_gateway", BANK_APP: "bank_simulator"}

UvicornOption = Callable[[list[str], str], str | None]


def documented_flags() -> dict[str, list[str]]:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"<!-- server-flags: (\S+) -->\n```text\n(.*?)\n```", readme, re.DOTALL)
    return {app: shlex.split(flags) for app, flags in blocks}


def option_pairs(flags: list[str]) -> list[tuple[str, str | None]]:
    """`--name value` and bare `--flag` items of a flag list."""
    pairs: list[tuple[str, str | None]] = []
    for index, word in enumerate(flags):
        if not word.startswith("--"):
            continue
        following = flags[index + 1] if index + 1 < len(flags) else "--"
        pairs.append((word, None if following.startswith("--") else following))
    return pairs


def assert_runs_with(
    command: list[str], app: str, where: str, uvicorn_option: UvicornOption
) -> None:
    for option, value in option_pairs(documented_flags()[app]):
        if value is None:
            assert option in command, f"{where}: {app} runs without {option}"
        else:
            found = uvicorn_option(command, option)
            assert found == value, f"{where}: {app} runs with {option} {found}, not {value}"


@pytest.fixture(params=[GATEWAY_APP, BANK_APP])
def app(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


def test_the_readme_lists_valid_uvicorn_flags_for_both_apps(app: str) -> None:
    flags = documented_flags()[app]
    # uvicorn's own command line parser: an unknown option or a bad value raises.
    params = uvicorn_cli.make_context("uvicorn", [app, *flags]).params
    assert params["server_header"] is False
    assert params["limit_concurrency"] > 0
    assert params["timeout_keep_alive"] > 0


def test_the_gateway_protocol_class_is_importable_and_the_bank_does_not_need_the_gateway() -> None:
    protocol = dict(option_pairs(documented_flags()[GATEWAY_APP]))["--http"]
    assert protocol is not None
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from uvicorn.importer import import_from_string; "
            "from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol; "
            "assert issubclass(import_from_string(sys.argv[1]), HttpToolsProtocol)",
            protocol,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    # The bank's image holds only the bank simulator.
    assert not any("payment_gateway" in word for word in documented_flags()[BANK_APP])


def _makefile_command(app: str) -> list[str]:
    text = (REPO_ROOT / "Makefile").read_text(encoding="utf-8").replace("\\\n", " ")
    for line in text.splitlines():
        words = shlex.split(line.replace("@trap 'kill 0' EXIT;", ""))
        if app in words:
            start = words.index(app)
            return words[start : words.index("&", start) if "&" in words[start:] else None]
    raise AssertionError(f"the Makefile never starts {app}")


def test_make_run_uses_the_flags(app: str, uvicorn_option: UvicornOption) -> None:
    assert_runs_with(_makefile_command(app), app, "Makefile", uvicorn_option)


def test_the_dockerfiles_use_the_flags(
    dockerfiles: dict[str, Any], app: str, uvicorn_option: UvicornOption
) -> None:
    command = dockerfiles[DOCKERFILE_OF[app]][-1].all("CMD")[-1].operands
    assert command[1] == app
    assert_runs_with(command, app, f"{DOCKERFILE_OF[app]}/Dockerfile", uvicorn_option)


def test_the_kubernetes_deployments_inherit_the_image_command(
    load_yaml: Callable[[Path], list[dict[str, Any]]],
) -> None:
    """No `command`/`args` in the manifests: the pods run the image's CMD, flags included."""
    manifests = sorted((REPO_ROOT / "deployments").glob("*-deployment.yaml"))
    assert len(manifests) == 2
    for path in manifests:
        for document in load_yaml(path):
            for container in document["spec"]["template"]["spec"]["containers"]:
                assert "command" not in container, f"{path.name}: overrides the image CMD"
                assert "args" not in container, f"{path.name}: overrides the image CMD"


def _literal_assignment(path: Path, name: str) -> Any:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == name for target in node.targets
        ):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{path}: no {name} = ...")


def test_the_e2e_and_browser_tests_start_every_service_with_the_flags(
    app: str, uvicorn_option: UvicornOption
) -> None:
    launcher = REPO_ROOT / "tests" / "support" / "live_services.py"
    flags = _literal_assignment(launcher, "SERVER_FLAGS")
    assert_runs_with(flags[app], app, "live_services", uvicorn_option)
    assert "*SERVER_FLAGS[app]" in launcher.read_text(encoding="utf-8"), (
        "start_service no longer passes SERVER_FLAGS"
    )


def test_the_benchmark_runs_the_gateway_with_its_flags(uvicorn_option: UvicornOption) -> None:
    tree = ast.parse((REPO_ROOT / "bench" / "services.py").read_text(encoding="utf-8"))
    commands = [
        [
            element.value
            for element in node.elts
            if isinstance(element, ast.Constant) and isinstance(element.value, str)
        ]
        for node in ast.walk(tree)
        if isinstance(node, ast.List)
        and any(isinstance(e, ast.Constant) and e.value == "uvicorn" for e in node.elts)
    ]
    assert len(commands) == 1, "expected one uvicorn command line in bench/services.py"
    assert_runs_with(commands[0], GATEWAY_APP, "bench/services.py", uvicorn_option)
