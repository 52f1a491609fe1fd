"""Strategies side by side, and hard vs soft reward: the same proxy, the same number of trained candidates.

Every strategy (random, evolution, mnas, fbnetv3, tpe, nsga2) searches the default space for
``--trials`` candidates per seed, each trained for real under the same proxy (``--proxy-images``
training images, one epoch, BatchNorm re-estimated, ``--val-images`` validation images), with the
budget at the median predicted latency of the space on the host TFLite device. Reported per
strategy: the best proxy accuracy among candidates predicted within the budget after each trained
candidate (mean and spread over seeds), and wall time. Then the mnas controller once more with
the soft reward, against its hard-reward run of the same seed: where each puts its trials.

Writes ``benchmarks/results/search_strategies.json`` / ``.png`` and ``search_hard_vs_soft.png``.

    flock /tmp/hwnas-cpu.lock .venv/bin/python benchmarks/search_strategies.py
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
STRATEGIES = ("random", "evolution", "mnas", "fbnetv3", "tpe", "nsga2")


def best_so_far(trials: list[dict[str, Any]], budget: float) -> list[float | None]:
    """Best proxy accuracy among candidates predicted within ``budget`` after 1, 2, ... trained candidates."""
    best, curve = None, []
    for trial in trials:
        if trial.get("accuracy") is not None and trial["predicted_latency_ms"] <= budget:
            best = trial["accuracy"] if best is None else max(best, trial["accuracy"])
        curve.append(best)
    return curve


def run_one(config_kwargs: dict[str, Any], executor: Any) -> dict[str, Any]:
    from hwnas.search.loop import SearchConfig, SearchLoop

    config = SearchConfig(**config_kwargs)
    shutil.rmtree(config.out, ignore_errors=True)
    started = time.perf_counter()
    summary = SearchLoop(config).run(executor)
    wall = time.perf_counter() - started
    trials = summary["trials"]
    curve = best_so_far(trials, config.search_budget_ms)
    return {
        "strategy": config.strategy,
        "reward": config.reward.name,
        "seed": config.seed,
        "wall_time_s": wall,
        "trained": summary["trained"],
        "failed": summary["failed"],
        "duplicates_not_retrained": summary["duplicates_not_retrained"],
        "best_accuracy_within_budget": curve[-1] if curve else None,
        "best_so_far": curve,
        "feasible_trials": sum(t["predicted_latency_ms"] <= config.search_budget_ms for t in trials),
        "trials": [
            {
                k: t.get(k)
                for k in ("number", "arch", "recipe", "accuracy", "predicted_latency_ms", "reward", "state", "wall_time_s")
            }
            for t in trials
        ],
        "strategy_report": summary["strategy_report"],
    }


def aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for strategy in STRATEGIES:
        mine = [r for r in runs if r["strategy"] == strategy and r["reward"] == "hard"]
        finals = [r["best_accuracy_within_budget"] for r in mine if r["best_accuracy_within_budget"] is not None]
        table[strategy] = {
            "seeds": len(mine),
            "best_accuracy_mean": statistics.mean(finals) if finals else None,
            "best_accuracy_min": min(finals) if finals else None,
            "best_accuracy_max": max(finals) if finals else None,
            "best_accuracy_stdev": statistics.stdev(finals) if len(finals) > 1 else None,
            "wall_time_s_mean": statistics.mean(r["wall_time_s"] for r in mine) if mine else None,
            "mean_best_so_far": [
                statistics.mean(v for v in values if v is not None) if any(v is not None for v in values) else None
                for values in zip(*(r["best_so_far"] for r in mine), strict=True)
            ]
            if mine
            else [],
        }
    return table


def plot(table: dict[str, Any], runs: list[dict[str, Any]], budget: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for strategy, row in table.items():
        curve = row["mean_best_so_far"]
        xs = [i + 1 for i, v in enumerate(curve) if v is not None]
        ax.plot(
            xs, [v for v in curve if v is not None], marker="o", ms=3, label=f"{strategy} (final {row['best_accuracy_mean']:.4f})"
        )
        for run in (r for r in runs if r["strategy"] == strategy and r["reward"] == "hard"):
            pts = [(i + 1, v) for i, v in enumerate(run["best_so_far"]) if v is not None]
            ax.plot(*zip(*pts, strict=True), lw=0.5, alpha=0.3, c=ax.lines[-1].get_color())
    ax.set_xlabel("candidates trained")
    ax.set_ylabel("best proxy accuracy within budget")
    ax.set_title(f"strategies at equal trained candidates; budget {budget:.3f} ms (mean of seeds, thin: each seed)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(RESULTS / "search_strategies.png", dpi=120)
    plt.close(fig)


def plot_rewards(hard: dict[str, Any], soft: dict[str, Any], budget: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for run, colour in ((hard, "tab:blue"), (soft, "tab:orange")):
        done = [t for t in run["trials"] if t["accuracy"] is not None]
        ax.scatter([t["predicted_latency_ms"] for t in done], [t["accuracy"] for t in done], s=14, c=colour, alpha=0.6,
                   label=f"{run['reward']} reward trials")  # fmt: skip
        chosen = max(done, key=lambda t: t["reward"])
        ax.scatter([chosen["predicted_latency_ms"]], [chosen["accuracy"]], s=120, marker="*", c=colour, edgecolors="k",
                   label=f"{run['reward']}: highest reward")  # fmt: skip
    ax.axvline(budget, c="tab:red", ls="--", label=f"search budget {budget:.3f} ms")
    ax.set_xlabel("predicted latency (ms)")
    ax.set_ylabel("proxy accuracy")
    ax.set_title("mnas controller: hard vs soft MnasNet reward (same seed, same trials)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(RESULTS / "search_hard_vs_soft.png", dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--proxy-images", type=int, default=1000)
    parser.add_argument("--val-images", type=int, default=500)
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-search-strategies")
    args = parser.parse_args()

    from hwnas.presets import get_space
    from hwnas.recipe import Recipe
    from hwnas.search.device import load_device_latency
    from hwnas.search.executors import LocalExecutor
    from hwnas.search.result import space_median_ms
    from hwnas.search.reward import parse_reward

    space = get_space("default")
    device = load_device_latency("host-tflite", space)
    budget = space_median_ms(space, device)
    started = time.perf_counter()
    executor = LocalExecutor(args.workers)
    common = {
        "space": space,
        "device": device,
        "trials": args.trials,
        "base_recipe": Recipe(batch_size=32, epochs=1),
        "train_images": args.proxy_images,
        "val_images": args.val_images,
    }
    runs = []
    try:
        for seed in range(args.seeds):
            for strategy in args.strategies:
                out = args.out / f"{strategy}-hard-{seed}"
                runs.append(
                    run_one(
                        common | {"reward": parse_reward("hard", budget), "out": out, "strategy": strategy, "seed": seed},
                        executor,
                    )
                )
                print(
                    json.dumps({k: runs[-1][k] for k in ("strategy", "seed", "best_accuracy_within_budget", "wall_time_s")}),
                    flush=True,
                )
        soft = run_one(
            common | {"reward": parse_reward("soft", budget), "out": args.out / "mnas-soft-0", "strategy": "mnas", "seed": 0},
            executor,
        )
    finally:
        executor.close()
    table = aggregate(runs)
    hard = next(r for r in runs if r["strategy"] == "mnas" and r["seed"] == 0)
    search_budget = budget * 0.95
    report = {
        "what": "strategies at equal trained candidates, same proxy; best proxy accuracy among candidates predicted within the "
        "search budget (budget x 0.95)",
        "budget_ms": budget,
        "search_budget_ms": search_budget,
        "proxy": {
            "train_images": args.proxy_images,
            "val_images": args.val_images,
            "epochs": 1,
            "batch_size": 32,
            "bn_reestimated_on": 512,
        },
        "trials_per_run": args.trials,
        "seeds": args.seeds,
        "workers": args.workers,
        "wall_time_s": time.perf_counter() - started,
        "table": table,
        "fbnetv3_minus_random_points": (table["fbnetv3"]["best_accuracy_mean"] - table["random"]["best_accuracy_mean"]) * 100
        if table.get("fbnetv3", {}).get("best_accuracy_mean") and table.get("random", {}).get("best_accuracy_mean")
        else None,
        "hard_vs_soft": {
            name: {
                "mean_predicted_ms": statistics.mean(t["predicted_latency_ms"] for t in run["trials"]),
                "share_within_search_budget": sum(t["predicted_latency_ms"] <= search_budget for t in run["trials"])
                / len(run["trials"]),
                "highest_reward": max((t for t in run["trials"] if t["reward"] is not None), key=lambda t: t["reward"]),
            }
            for name, run in (("hard", hard), ("soft", soft))
        },
        "runs": [*runs, soft],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "search_strategies.json").write_text(json.dumps(report, indent=2) + "\n")
    plot(table, runs, search_budget)
    plot_rewards(hard, soft, search_budget)
    print(json.dumps({s: row["best_accuracy_mean"] for s, row in table.items()}))


if __name__ == "__main__":
    main()
