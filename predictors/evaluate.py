"""Judge latency predictors on held-out measured networks, next to the device's own noise floor.

The metrics are the ones the literature reports (nn-Meter: share within +-10%), plus RMSE, MAPE
and Kendall tau (search only needs the ranking to be right). The noise floor says how well the
device agrees with itself: a predictor cannot be judged better than the measurements it is
compared with. Two views of it:

- *within a run*: each network's p10/p90 and coefficient of variation over its timed repeats;
- *between runs* (the honest one): the same networks measured again in another session, scored
  with the same metrics as if the first measurement were a prediction of the second.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import kendalltau

from hwnas.fileio import atomic_write
from hwnas.predictors.data import MeasuredNetwork


def latency_metrics(predicted: Sequence[float], measured: Sequence[float]) -> dict[str, float]:
    """Share within +-5% / +-10%, RMSE (ms), MAPE (%), max |error| (%) and Kendall tau."""
    pred = np.asarray(predicted, dtype=np.float64)
    true = np.asarray(measured, dtype=np.float64)
    relative = (pred - true) / true
    tau = kendalltau(pred, true).statistic if len(true) > 1 else math.nan
    return {
        "n": len(true),
        "within_5pct": float(np.mean(np.abs(relative) <= 0.05)),
        "within_10pct": float(np.mean(np.abs(relative) <= 0.10)),
        "rmse_ms": float(np.sqrt(np.mean((pred - true) ** 2))),
        "mape_pct": float(np.mean(np.abs(relative)) * 100),
        "max_abs_pct": float(np.max(np.abs(relative)) * 100),
        "mean_bias_pct": float(np.mean(relative) * 100),
        "kendall_tau": float(tau),
    }


def within_run_noise(networks: Sequence[MeasuredNetwork]) -> dict[str, Any]:
    """Spread of the timed repeats of each network in one run (p10..p90 width relative to the median, CV)."""
    widths = [(n.p90_ms - n.p10_ms) / n.ms for n in networks if n.p10_ms is not None and n.p90_ms is not None]
    cvs = [n.cv for n in networks if n.cv is not None]
    if not widths and not cvs:
        return {"n": 0}
    return {
        "n": len(widths),
        "median_p10_p90_width_pct": float(np.median(widths) * 100) if widths else None,
        "median_cv_pct": float(np.median(cvs) * 100) if cvs else None,
        "max_cv_pct": float(np.max(cvs) * 100) if cvs else None,
    }


def between_run_noise(first: Sequence[MeasuredNetwork], second: Sequence[MeasuredNetwork]) -> dict[str, Any]:
    """The same networks measured in two sessions, scored as if the first predicted the second."""
    by_arch = {network.arch: network.ms for network in first}
    pairs = [(by_arch[network.arch], network.ms) for network in second if network.arch in by_arch]
    if len(pairs) < 2:
        return {"n": len(pairs)}
    again, once = zip(*pairs, strict=True)
    return latency_metrics(again, once)


def scatter_plot(series: Mapping[str, tuple[Sequence[float], Sequence[float]]], path: Path, title: str) -> Path:
    """Predicted-vs-measured scatter (one colour per predictor) with the +-10% band, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(5.5, 5.5), dpi=120)
    low = min(min(min(p), min(m)) for p, m in series.values())
    high = max(max(max(p), max(m)) for p, m in series.values())
    line = np.linspace(low * 0.9, high * 1.1, 2)
    axes.plot(line, line, color="black", linewidth=1, label="exact")
    axes.fill_between(line, line * 0.9, line * 1.1, color="grey", alpha=0.2, label="±10%")
    for name, (predicted, measured) in series.items():
        axes.scatter(measured, predicted, s=14, alpha=0.75, label=name)
    axes.set_xlabel("measured latency (ms)")
    axes.set_ylabel("predicted latency (ms)")
    axes.set_title("\n".join(textwrap.wrap(title, 60)), fontsize=9)
    axes.legend(fontsize=8)
    axes.grid(True, alpha=0.3)
    figure.tight_layout()
    try:  # a plot in a folder that cannot be written is one line, and never half a PNG
        return atomic_write(Path(path), lambda temp: figure.savefig(temp, format="png"))
    finally:
        plt.close(figure)
