"""wrk, the load generator: installing it, running it with load.lua, reading its result."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from payment_gateway.service.merchants import DEMO_MERCHANTS

from bench.paths import LOAD_SCRIPT, RESULTS_DIR
from bench.progress import log
from bench.results import Latency, LoadMode

WRK_TIMEOUT = "10s"
RESULT_PREFIX = "WRK_JSON "  # the line load.lua's done() prints
SOCKET_ERROR_KINDS = ("connect", "read", "write", "timeout")  # "status" is in the statuses
# The demo merchants' API keys (DEMO_MERCHANTS=true seeds them).
FIRST_MERCHANT_TOKEN = DEMO_MERCHANTS["merchant_one"]
SECOND_MERCHANT_TOKEN = DEMO_MERCHANTS["merchant_two"]


def ensure_wrk() -> str:
    """The path of wrk, installing the Debian package first when it is missing."""
    found = shutil.which("wrk")
    if found:
        return found
    apt = shutil.which("apt-get")
    if apt is None:
        raise RuntimeError("wrk is not installed and apt-get is not available: install wrk")
    prefix = [] if os.geteuid() == 0 else [shutil.which("sudo") or "sudo", "-n"]
    log("wrk is missing: apt-get install -y wrk")
    install = [*prefix, apt, "install", "-y", "wrk"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run(install, env=env, check=False).returncode != 0:  # noqa: S603
        subprocess.run([*prefix, apt, "update"], env=env, check=True)  # noqa: S603
        subprocess.run(install, env=env, check=True)  # noqa: S603
    found = shutil.which("wrk")
    if not found:
        raise RuntimeError("wrk is still missing after apt-get install")
    return found


@dataclass(frozen=True)
class WrkResult:
    duration_s: float
    sent: int  # requests built by the Lua script
    responses: int  # answers received
    statuses: Mapping[str, int]
    unexpected: int  # answers with a status the run did not expect (load.lua's expect=)
    socket_errors: Mapping[str, int]  # connect/read/write/timeout
    latency_ms: Latency

    @property
    def ok_2xx(self) -> int:
        return sum(count for code, count in self.statuses.items() if code.startswith("2"))

    def per_second(self, status: str) -> float:
        return self.statuses.get(status, 0) / self.duration_s

    @property
    def non_2xx(self) -> int:
        return sum(self.statuses.values()) - self.ok_2xx

    @property
    def unanswered(self) -> int:
        """Requests sent but not answered: in flight when wrk stopped, or cut by an error."""
        return max(0, self.sent - self.responses)


def run_wrk(
    wrk: str,
    url: str,
    mode: LoadMode,
    *,
    connections: int,
    seconds: int,
    threads: int,
    label: str,
    token: str = FIRST_MERCHANT_TOKEN,
    expect: Sequence[str] = ("2xx",),
    delay_ms: int = 0,
) -> WrkResult:
    """One wrk run; ``expect`` are the statuses (codes or classes) that are not errors, and
    ``delay_ms`` the pause of each connection before its next request."""
    run_id = f"{secrets.token_hex(4)}-{mode}-c{connections}"
    script_args = [run_id, mode, f"token={token}", f"expect={','.join(expect)}"]
    if delay_ms:
        script_args.append(f"delay={delay_ms}")
    command = [
        wrk,
        f"-t{min(threads, connections)}",
        f"-c{connections}",
        f"-d{seconds}s",
        f"--timeout={WRK_TIMEOUT}",
        "--latency",
        "-s",
        str(LOAD_SCRIPT),
        url,
        "--",
        *script_args,
    ]
    completed = subprocess.run(  # noqa: S603 - wrk with fixed arguments
        command, capture_output=True, text=True, check=False, timeout=seconds + 120
    )
    with (RESULTS_DIR / "wrk.log").open("a") as wrk_log:
        wrk_log.write(f"==== {label}: {' '.join(command)}\n{completed.stdout}{completed.stderr}\n")
    result = parse_wrk_output(completed.stdout)
    if completed.returncode != 0 or result is None:
        raise RuntimeError(f"wrk failed ({completed.returncode}):\n{completed.stderr}")
    return result


def parse_wrk_output(stdout: str) -> WrkResult | None:
    """The result line of load.lua (times in microseconds) in wrk's output; None without one."""
    line = next((ln for ln in stdout.splitlines() if ln.startswith(RESULT_PREFIX)), None)
    if line is None:
        return None
    data = json.loads(line.removeprefix(RESULT_PREFIX))
    latency = data["latency_us"]
    percentiles = latency["percentiles"]
    return WrkResult(
        duration_s=data["duration_us"] / 1e6,
        sent=int(data["sent"]),
        responses=int(data["responses"]),
        statuses={str(code): int(count) for code, count in data["statuses"].items()},
        unexpected=int(data["unexpected"]),
        socket_errors={kind: int(data["errors"].get(kind, 0)) for kind in SOCKET_ERROR_KINDS},
        latency_ms=Latency(
            p50=percentiles["50"] / 1000,
            p75=percentiles["75"] / 1000,
            p90=percentiles["90"] / 1000,
            p99=percentiles["99"] / 1000,
            p99_9=percentiles["99.9"] / 1000,
            mean=latency["mean"] / 1000,
            max=latency["max"] / 1000,
        ),
    )
