"""Latency samples and the robust statistics a table keeps of them."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


def other_runnable(samples: int = 5, interval_s: float = 0.1) -> int | None:
    """How many other processes' threads want a core right now: the median over ``samples`` reads of ``/proc/loadavg``'s
    runnable count, less the reader (``None`` where there is no such file). What a timing shares its cores with."""
    counts = []
    for index in range(samples):
        try:
            running = int(Path("/proc/loadavg").read_text().split()[3].split("/")[0])
        except (OSError, IndexError, ValueError):
            return None
        counts.append(running - 1)  # less this process, which is running while it reads
        if index < samples - 1:
            time.sleep(interval_s)
    return max(0, round(statistics.median(counts)))


@dataclass(frozen=True)
class Measurement:
    """Raw per-run latencies (ms) of one model on one device, with robust summary statistics.

    ``samples_ms`` are kept whole; the statistics are computed after dropping outliers (runs more
    than ``OUTLIER_MADS`` median absolute deviations from the median: a page fault or a context
    switch, not the model). When a runtime reports only per-round means (``benchmark_model`` on a
    phone), ``sample_kind`` says so.
    """

    samples_ms: tuple[float, ...]
    fingerprint: dict[str, Any] = field(default_factory=dict, compare=False)
    sample_kind: str = "run"

    OUTLIER_MADS = 5.0

    def __post_init__(self) -> None:
        if not self.samples_ms:
            raise ValueError("a measurement needs at least one sample")

    @property
    def kept(self) -> np.ndarray:
        samples = np.asarray(self.samples_ms, dtype=float)
        median = np.median(samples)
        mad = np.median(np.abs(samples - median)) * 1.4826
        if mad == 0:
            return samples
        return samples[np.abs(samples - median) <= self.OUTLIER_MADS * mad]

    @property
    def median_ms(self) -> float:
        return float(np.median(self.kept))

    @property
    def p10_ms(self) -> float:
        return float(np.percentile(self.kept, 10))

    @property
    def p90_ms(self) -> float:
        return float(np.percentile(self.kept, 90))

    @property
    def mean_ms(self) -> float:
        return float(np.mean(self.kept))

    @property
    def cv(self) -> float:
        """Coefficient of variation of the kept samples (std / mean)."""
        kept = self.kept
        return float(np.std(kept) / np.mean(kept)) if np.mean(kept) > 0 else 0.0

    @property
    def outliers(self) -> int:
        return len(self.samples_ms) - len(self.kept)

    def summary(self) -> dict[str, float | int]:
        return {
            "median_ms": self.median_ms,
            "p10_ms": self.p10_ms,
            "p90_ms": self.p90_ms,
            "cv": self.cv,
            "n": len(self.samples_ms),
            "outliers": self.outliers,
        }
