"""Where the benchmark's inputs and outputs are."""

from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
LOAD_SCRIPT = BENCH_DIR / "load.lua"
