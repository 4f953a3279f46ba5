"""The results the benchmark has stored in bench/results/, which the tests render and reload."""

from pathlib import Path

STORED_RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results"
# Every stored result that has its Markdown next to it: latest, the timestamped copies, and
# a local latest-quick when there is one.
STORED_JSON = sorted(p for p in STORED_RESULTS.glob("*.json") if p.with_suffix(".md").exists())
SOAK_RESULT = STORED_RESULTS / "20261125T222858Z.json"  # a full run with the 120 s soak
NO_SOAK_RESULT = STORED_RESULTS / "20261125T193552Z.json"  # a full run without a soak
