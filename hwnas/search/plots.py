"""The plots of a search: its trials and Pareto front, the top K as measured, and one device's choices at several budgets.

The Pareto front is also what ``hwnas run`` offers beside its winner (:mod:`hwnas.pipeline.stages.search`): one
definition for both.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def pareto_front(items: Iterable[T], *, latency: Callable[[T], float | None], accuracy: Callable[[T], float | None]) -> list[T]:
    """The items no other item beats on both lower latency and higher accuracy, fastest first (an item missing either
    is left out; of equal latencies the more accurate)."""
    scored = [(latency(item), accuracy(item), item) for item in items]
    ordered = sorted(
        ((ms, acc, item) for ms, acc, item in scored if ms is not None and acc is not None), key=lambda x: (x[0], -x[1])
    )
    front: list[T] = []
    best = -math.inf
    for _, acc, item in ordered:
        if acc > best:
            front.append(item)
            best = acc
    return front


def pareto_plot(trials: list[dict[str, Any]], report: dict[str, Any], path: Path) -> Path:
    """Accuracy vs latency: every trial at its predicted latency, the top K at their measured one, the budget."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    _trials_and_front(ax, trials)
    for entry in report["top"]:
        if not entry.get("measured"):
            continue
        m = entry["measured"]
        colour = {"within": "tab:green", "over": "tab:red"}.get(entry["judged"]["verdict"], "tab:orange")
        ax.errorbar(
            m["median_ms"],
            entry["proxy_accuracy"],
            xerr=[[m["median_ms"] - m["ci_low_ms"]], [m["ci_high_ms"] - m["median_ms"]]],
            fmt="o",
            c=colour,
            ms=7,
            capsize=3,
        )
        ax.annotate(
            f"top{entry['rank']}",
            (m["median_ms"], entry["proxy_accuracy"]),
            textcoords="offset points",
            xytext=(5, 5),
            fontsize=8,
        )
    ax.axvline(report["budget_ms"], c="tab:red", ls="--", label=f"budget {report['budget_ms']:.3f} ms")
    ax.set_xlabel(f"latency on {report['device']['device']} (ms)")
    ax.set_ylabel("proxy validation accuracy")
    ax.set_title("search trials; measured top K (green within, red over, orange borderline; bars: 95% CI)", fontsize=9)
    return _save_figure(fig, ax, path)


def pareto_plot_budgets(
    trials: list[dict[str, Any]], chosen: dict[float, tuple[str, float | None, float, bool]], device: str, path: Path
) -> Path:
    """One device's searches at several budgets on one plot: every trial at its predicted latency, each budget's line,
    and the network chosen for it (``chosen``: budget -> (arch, its latency, its search accuracy, whether that latency
    was measured); a predicted one, of a device given as its table, is drawn hollow)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    _trials_and_front(ax, trials)
    for index, (budget, (arch, latency, accuracy, measured)) in enumerate(sorted(chosen.items())):
        colour = f"C{index + 1}"
        ax.axvline(budget, c=colour, ls="--", lw=1, label=f"budget {budget:g} ms")
        if latency is not None:
            ax.plot(latency, accuracy, "o", c=colour if measured else "none", ms=8, mec=colour if not measured else "black")
            ax.annotate(arch.split(":", 1)[-1][:28], (latency, accuracy), textcoords="offset points", xytext=(5, 5), fontsize=6)
    ax.set_xlabel(f"latency on {device} (ms)")
    ax.set_ylabel("validation accuracy (inherited weights)")
    where = "measured" if all(measured for *_, measured in chosen.values()) else "predicted (not measured: hollow)"
    ax.set_title(f"one supernet, one device: each budget's network at its {where} latency", fontsize=9)
    return _save_figure(fig, ax, path)


def _trials_and_front(ax: Any, trials: list[dict[str, Any]]) -> None:
    done = [t for t in trials if t.get("accuracy") is not None]
    predicted = [(t["predicted_latency_ms"], t["accuracy"]) for t in done]
    if predicted:
        ax.scatter(*zip(*predicted, strict=True), s=12, c="0.6", label="trials (predicted latency, proxy accuracy)")
        front = pareto_front(predicted, latency=lambda point: point[0], accuracy=lambda point: point[1])
        ax.plot(*zip(*front, strict=True), c="0.4", lw=1, drawstyle="steps-post", label="Pareto front (predicted)")


def _save_figure(fig: Any, ax: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
