"""Memory of the services: RSS sampled during a run, and the memory table of the report."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

from bench.procfs import memory_kib
from bench.results import MemoryRow

MAX_RSS_GROWTH = 0.10
MAX_WORKER_RSS_MIB = 150


@dataclass
class RssSeries:
    """VmRSS samples (KiB) of one process during one measured run."""

    samples: list[int] = field(default_factory=list)

    @property
    def first_mib(self) -> float:
        return self.samples[0] / 1024 if self.samples else 0.0

    @property
    def last_mib(self) -> float:
        return self.samples[-1] / 1024 if self.samples else 0.0

    @property
    def peak_mib(self) -> float:
        return max(self.samples) / 1024 if self.samples else 0.0


class RssSampler:
    """Samples VmRSS of the given processes every ``interval`` seconds in a background thread."""

    def __init__(self, processes: dict[int, str], interval: float = 0.5) -> None:
        self._processes = processes
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self.series: dict[str, RssSeries] = {label: RssSeries() for label in processes.values()}

    def _sample(self) -> None:
        for pid, label in self._processes.items():
            rss, _ = memory_kib(pid)
            if rss:
                self.series[label].samples.append(rss)

    def _run(self) -> None:
        while True:
            self._sample()
            if self._stop.wait(self._interval):
                return

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()  # the state at the very end of the run


def rss_snapshot_mib(processes: dict[int, str]) -> dict[str, float]:
    return {label: memory_kib(pid)[0] / 1024 for pid, label in processes.items()}


def hwm_snapshot_mib(processes: dict[int, str]) -> dict[str, float]:
    return {label: memory_kib(pid)[1] / 1024 for pid, label in processes.items()}


def memory_rows(
    after_warmup: Mapping[str, float],
    series: Mapping[str, RssSeries],
    peaks: Mapping[str, float],
    hwm: Mapping[str, float],
) -> list[MemoryRow]:
    """One row per process: growth from ``after_warmup`` to the end of ``series``, flagged."""
    rows = []
    for label, baseline in after_warmup.items():
        run = series.get(label, RssSeries())
        end = run.last_mib or baseline
        growth = (end - baseline) / baseline * 100 if baseline else 0.0
        flags = []
        if growth > MAX_RSS_GROWTH * 100:
            flags.append(f"grew > {MAX_RSS_GROWTH:.0%}")
        if " worker " in label and max(peaks.get(label, 0.0), end) > MAX_WORKER_RSS_MIB:
            flags.append(f"worker > {MAX_WORKER_RSS_MIB} MiB")
        rows.append(
            MemoryRow(
                process=label,
                after_warmup_mib=baseline,
                start_mib=run.first_mib,
                end_mib=end,
                peak_mib=max(peaks.get(label, 0.0), run.peak_mib),
                hwm_mib=hwm.get(label, 0.0),
                growth_pct=growth,
                flag=", ".join(flags),
            )
        )
    return rows
