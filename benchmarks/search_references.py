"""Searched winners against the networks a user would otherwise pick, at three budgets, measured in one session.

Budgets: the 25th, 50th and 75th percentile of the predicted latency of 1000 sampled architectures
of the default space on the host TFLite device (tight, median, loose). At each, fbnetv3 searches
``--trials`` candidates under the proxy; the winner is retrained with its own recipe for
``--epochs`` epochs on ``--train-images`` images. The references are torchvision's mobilenet_v2
(width 0.35, 0.5, 0.75, 1.0), mobilenet_v3_small / large and mnasnet0_5 / 1_0, built for the data's
one channel and ten classes, both as torchvision builds them (stride-2 stem) and with the usual
small-image adaptation (stem and first strided stage at stride 1), trained with the default recipe
(SGD, lr 0.2, batch 32, cosine) for the same epochs on the same images. Everything is exported to
TFLite, verified, and timed in the same interleaved rounds on the same device.

Writes ``benchmarks/results/search_references.json`` and ``search_references.png``.

    flock /tmp/hwnas-cpu.lock .venv/bin/python benchmarks/search_references.py
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def train_module(model: nn.Module, data: Any, recipe: Any, channels: int, seed: int) -> dict[str, Any]:
    """:func:`hwnas.pipeline.references.train_reference` at 32 px, FLOPs in millions (this benchmark's unit)."""
    from hwnas.pipeline.references import train_reference

    result = train_reference(model, data, recipe, 32, channels, seed)
    result["mflops"] = result.pop("flops") / 1e6
    return result


def export(module: nn.Module, data: Any, folder: Path, info: dict[str, Any]) -> Path | None:
    """The module as a verified TFLite file (:func:`hwnas.pipeline.references.export_reference`), or None."""
    from hwnas.pipeline.references import export_reference

    exported = export_reference(module, None, 32, 1, "tflite", folder, info)
    return folder / exported["file"] if exported["file"] else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--proxy-images", type=int, default=1000)
    parser.add_argument("--train-images", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-search-references")
    args = parser.parse_args()

    from hwnas.data import load_data
    from hwnas.presets import get_space
    from hwnas.recipe import Recipe
    from hwnas.search.device import load_device_latency
    from hwnas.search.executors import LocalExecutor
    from hwnas.search.loop import SearchConfig, SearchLoop
    from hwnas.search.measure import time_interleaved
    from hwnas.search.reward import parse_reward

    started = time.perf_counter()
    shutil.rmtree(args.out, ignore_errors=True)
    space = get_space("default")
    device = load_device_latency("host-tflite", space)
    sampled = device.predict([space.sample(seed) for seed in range(1000)])
    budgets = {name: float(np.percentile(sampled, q)) for name, q in (("tight", 25), ("median", 50), ("loose", 75))}
    data = load_data().head(args.train_images, 1000)
    base = Recipe(batch_size=32, epochs=args.epochs)
    winners: dict[str, dict[str, Any]] = {}
    executor = LocalExecutor(2)
    try:
        for name, budget in budgets.items():
            config = SearchConfig(
                space,
                device,
                parse_reward("hard", budget),
                args.out / name,
                strategy="fbnetv3",
                trials=args.trials,
                base_recipe=Recipe(batch_size=32, epochs=1),
                train_images=args.proxy_images,
                val_images=500,
            )
            summary = SearchLoop(config).run(executor)
            winners[name] = {"budget_ms": budget, "search": summary["best"], "search_wall_s": None}
    finally:
        executor.close()
    torch.set_num_threads(2)
    files: dict[str, Path] = {}
    rows: dict[str, dict[str, Any]] = {}
    from hwnas.builder import build_model

    for name, winner in winners.items():
        best = winner["search"]
        arch = space.parse(best["arch"])
        recipe = Recipe.from_json(best["recipe"] | {"epochs": args.epochs})
        torch.manual_seed(0)
        model = build_model(space, arch, dropout=recipe.dropout, drop_path=recipe.drop_path)
        trained = train_module(model, data, recipe, 1, 0)
        file = export(trained.pop("model"), data, args.out / "files" / f"searched-{name}", {"name": name, "arch": best["arch"]})
        rows[f"searched-{name}"] = {
            "kind": "searched",
            "budget": name,
            "arch": best["arch"],
            "recipe": recipe.to_json(),
            "proxy_accuracy": best["accuracy"],
            "predicted_ms": best["predicted_latency_ms"],
        } | trained
        if file:
            files[f"searched-{name}"] = file
        print(json.dumps({"row": f"searched-{name}", "test": trained["test_accuracy"]}), flush=True)
    from hwnas.pipeline.references import ALL_REFERENCES, REFERENCE_MODELS, reference_module

    for name in ALL_REFERENCES:
        model_name, kwargs = REFERENCE_MODELS[name]
        for small in (False, True):
            label = f"{name}{'-small-image' if small else ''}"
            trained = train_module(reference_module(name, 1, 10, small), data, base, 1, 0)
            file = export(trained.pop("model"), data, args.out / "files" / label, {"name": label})
            rows[label] = {"kind": "reference", "model": model_name, "kwargs": kwargs, "small_image": small} | trained
            if file:
                files[label] = file
            print(json.dumps({"row": label, "test": trained["test_accuracy"], "mflops": trained["mflops"]}), flush=True)
    timed = time_interleaved(device.backend, files, args.rounds)
    for label, row in rows.items():
        row["measured"] = timed[label].summary() if label in timed else None
    verdicts = {}
    for name, budget in budgets.items():
        winner = rows[f"searched-{name}"]
        within = [
            r for label, r in rows.items() if r["kind"] == "reference" and r["measured"] and r["measured"]["median_ms"] <= budget
        ]
        best_ref = max(within, key=lambda r: r["test_accuracy"], default=None)
        verdicts[name] = {
            "budget_ms": budget,
            "searched_test_accuracy": winner["test_accuracy"],
            "searched_measured_ms": winner["measured"]["median_ms"] if winner["measured"] else None,
            "searched_within_budget": bool(winner["measured"] and winner["measured"]["median_ms"] <= budget),
            "references_within_budget": len(within),
            "best_reference_within": None
            if best_ref is None
            else {
                "model": best_ref["model"],
                "kwargs": best_ref["kwargs"],
                "small_image": best_ref["small_image"],
                "test_accuracy": best_ref["test_accuracy"],
                "measured_ms": best_ref["measured"]["median_ms"],
            },
            "searched_beats_every_reference_within": best_ref is None or winner["test_accuracy"] > best_ref["test_accuracy"],
        }
    report = {
        "what": __doc__.split("\n\n")[1].replace("\n", " "),
        "budgets_ms": budgets,
        "trials_per_search": args.trials,
        "proxy_images": args.proxy_images,
        "final": {"train_images": args.train_images, "epochs": args.epochs, "val_images": 1000, "test_images": len(data.test)},
        "device": device.describe(),
        "verdicts": verdicts,
        "rows": rows,
        "wall_time_s": time.perf_counter() - started,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "search_references.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    plot(rows, budgets)
    print(json.dumps(verdicts, indent=1))


def plot(rows: dict[str, dict[str, Any]], budgets: dict[str, float]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for label, row in rows.items():
        if not row.get("measured"):
            continue
        x, y = row["measured"]["median_ms"], row["test_accuracy"]
        style = {"searched": ("*", "tab:green", 160), "reference": ("s" if row.get("small_image") else "o", "tab:blue", 40)}[
            row["kind"]
        ]
        ax.scatter([x], [y], marker=style[0], c=style[1], s=style[2])
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, 3), fontsize=6)
    for name, budget in budgets.items():
        ax.axvline(budget, ls="--", c="tab:red", lw=0.8)
        ax.text(budget, ax.get_ylim()[0], f" {name}", fontsize=7, color="tab:red", rotation=90, va="bottom")
    ax.set_xscale("log")
    ax.set_xlabel("measured latency, TFLite XNNPACK 1 thread (ms, log)")
    ax.set_ylabel("test accuracy")
    ax.set_title("searched (stars) vs torchvision references (circles: as built; squares: small-image stride 1)", fontsize=9)
    fig.tight_layout()
    fig.savefig(RESULTS / "search_references.png", dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
