"""Measure model files on the device in interleaved rounds, check drift, judge a budget with a confidence interval.

A sub-millisecond network's single runs vary by 10-20% on this VM, and the VM itself runs a few
percent (some days tens of percent) faster or slower than on the day a table was made. So:

- every file is timed in ``rounds`` rounds, each round timing every file once (the backend's
  ``measure_session``: a fresh session, warm-up, its share of the runs), so a slow stretch of a
  shared machine touches all files a little rather than one file a lot;
- a file's latency is the median of its pooled runs; its confidence interval is the
  distribution-free interval of the median of its per-round medians (order statistics; >= 95%);
- the drift check times some of the table's own measured networks in the same rounds: their
  median ratio now / then says how far today's device is from the table's;
- a budget is met when the interval's upper end, corrected for drift when drift exceeds
  :data:`DRIFT_TOLERANCE`, is within it; over when its lower end is above; else borderline.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DRIFT_TOLERANCE = 0.05  # the between-session level shift measured on this VM (~5% MAPE)
CONFIDENCE = 0.95
PREDICTED_ONLY = "predicted only"  # the verdict for a device given as its latency table: nothing was timed


@dataclass
class Timed:
    name: str
    file: Path
    samples_ms: list[float]
    round_medians: list[float]

    def summary(self) -> dict[str, Any]:
        low, high, level = median_interval(self.round_medians)
        return {
            "median_ms": statistics.median(self.samples_ms),
            "ci_low_ms": low,
            "ci_high_ms": high,
            "ci_level": level,
            "rounds": len(self.round_medians),
            "runs": len(self.samples_ms),
            "round_medians_ms": [round(value, 6) for value in self.round_medians],
        }


def median_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """The narrowest order-statistic interval (x_(j), x_(n+1-j)) that covers the median with >= ``confidence``."""
    ordered = sorted(values)
    n = len(ordered)
    if n < 6:  # below 6 values no symmetric order interval reaches 95%: the whole range
        return ordered[0], ordered[-1], 1 - 2 * 0.5**n
    best = (ordered[0], ordered[-1], 1 - 2 * 0.5**n)
    for j in range(1, n // 2 + 1):
        coverage = 1 - 2 * sum(math.comb(n, i) for i in range(j)) / 2**n
        if coverage < confidence:
            break
        best = (ordered[j - 1], ordered[n - j], coverage)
    return best


def time_interleaved(
    backend: Any, files: dict[str, Path], rounds: int, on_round: Callable[[int], None] | None = None
) -> dict[str, Timed]:
    """Time every file once per round, ``rounds`` times, after letting the device settle."""
    timed = {name: Timed(name, path, [], []) for name, path in files.items()}
    if files:
        backend.settle(next(iter(files.values())))
    for index in range(rounds):
        for name, path in files.items():
            measurement = backend.measure_session(path)
            timed[name].samples_ms += [float(value) for value in measurement.kept]  # numpy scalars do not go into JSON
            timed[name].round_medians.append(float(measurement.median_ms))
        if on_round:
            on_round(index + 1)
    return timed


def drift(references: dict[str, tuple[Timed, float]]) -> dict[str, Any]:
    """Ratio of today's median to the table's for each reference network, and their median."""
    ratios = {name: timed.summary()["median_ms"] / table_ms for name, (timed, table_ms) in references.items()}
    ratio = float(statistics.median(ratios.values())) if ratios else 1.0
    return {
        "ratio": ratio,
        "per_network": {name: round(value, 4) for name, value in ratios.items()},
        "table_ms": {name: table_ms for name, (_, table_ms) in references.items()},
        "tolerance": DRIFT_TOLERANCE,
        "applied": bool(ratios and abs(ratio - 1) > DRIFT_TOLERANCE),
    }


def verdict(summary: dict[str, Any], budget_ms: float, drift_ratio: float, correct: bool) -> dict[str, Any]:
    """Within / over / borderline for one measured file, judged on the (drift-corrected) interval."""
    scale = drift_ratio if correct else 1.0
    low, high, median = (float(summary[key]) / scale for key in ("ci_low_ms", "ci_high_ms", "median_ms"))
    state = "within" if high <= budget_ms else "over" if low > budget_ms else "borderline"
    return {
        "judged_median_ms": median,
        "judged_ci_ms": [low, high],
        "drift_corrected": correct,
        "budget_ms": budget_ms,
        "verdict": state,
        "margin_ms": float(budget_ms - high),
    }
