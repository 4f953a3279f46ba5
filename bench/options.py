"""The command line of the benchmark."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from typing import Literal

Selection = Literal["fair-use", "listing", "galera"]  # the part of the benchmark --only runs


@dataclass(frozen=True)
class Options:
    duration: int
    warmup: int
    soak: int
    threads: int
    gateway_workers: int
    keep_db: bool
    quick: bool
    only: Selection | None = None  # None: everything


def parse_args(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark the payment gateway against MariaDB and the bank simulator.",
    )
    parser.add_argument("--duration", type=int, help="seconds per measured run (default 15)")
    parser.add_argument("--warmup", type=int, help="seconds of unmeasured warm-up (default 3)")
    parser.add_argument(
        "--soak",
        type=int,
        help="seconds of c64 load to check memory flatness (default 0, or 120 with --full)",
    )
    parser.add_argument("--full", action="store_true", help="include the 120 s memory soak")
    parser.add_argument(
        "--quick", action="store_true", help="smoke test: 3 s runs, 1 s warm-up, no soak"
    )
    parser.add_argument(
        "--gateway-workers", type=int, default=os.cpu_count() or 1, help="default: CPU count"
    )
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument(
        "--keep-db", action="store_true", help="keep the benchmark database afterwards"
    )
    parser.add_argument(
        "--only",
        choices=["fair-use", "listing", "galera"],
        help="run only this part: fair-use = the flooding-merchant runs with rate limits on; "
        "listing = pages of payments over 1,000,000 bulk-loaded ones (50,000 with --quick) "
        "galera = three replicas on a 3-node Galera cluster vs. on one server "
        "(results go to results/latest-<part>.* and do not replace latest)",
    )
    args = parser.parse_args(argv)
    # "is not None": an explicit 0 is refused below, not taken for the default.
    duration: int = args.duration if args.duration is not None else (3 if args.quick else 15)
    warmup: int = args.warmup if args.warmup is not None else (1 if args.quick else 3)
    soak: int = args.soak if args.soak is not None else (120 if args.full else 0)
    if duration < 1 or warmup < 0 or soak < 0 or args.gateway_workers < 1 or args.threads < 1:
        parser.error("durations must be positive and workers/threads at least 1")
    return Options(
        duration=duration,
        warmup=warmup,
        soak=soak,
        threads=args.threads,
        gateway_workers=args.gateway_workers,
        keep_db=args.keep_db,
        quick=args.quick,
        only=args.only,
    )
