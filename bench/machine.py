"""The machine, the software versions and the git revision the benchmark ran on."""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import subprocess
from pathlib import Path

from bench.paths import REPO
from bench.results import Machine


def machine_info(mariadb_version: str, wrk: str) -> Machine:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next(
        (ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if ln.startswith("model name")),
        platform.processor() or "unknown",
    )
    meminfo = Path("/proc/meminfo").read_text().split()
    ram_gib = int(meminfo[meminfo.index("MemTotal:") + 1]) / 1024 / 1024
    wrk_version = subprocess.run(  # noqa: S603
        [wrk, "--version"], capture_output=True, text=True, check=False
    ).stdout.split("Copyright", 1)[0]
    return Machine(
        cpu=model,
        cores=os.cpu_count() or 1,
        ram_gib=round(ram_gib, 1),
        kernel=platform.release(),
        os=_os_name(),
        python=platform.python_version(),
        mariadb=mariadb_version,
        wrk=wrk_version.strip(),
        git=_git_revision(),
    )


def _os_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    return platform.system()


def _git_revision() -> str:
    git = shutil.which("git")
    if git is None:
        return "unknown"

    def run(*args: str) -> str:
        return subprocess.run(  # noqa: S603
            [git, *args], cwd=REPO, capture_output=True, text=True, check=False
        ).stdout.strip()

    revision = run("rev-parse", "--short", "HEAD") or "unknown"
    dirty = run("status", "--porcelain", "--", "payment_gateway", "bank_simulator")
    return revision + (" + uncommitted changes" if dirty else "")
