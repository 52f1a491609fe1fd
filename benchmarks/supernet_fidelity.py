"""Rank fidelity of the shipped supernet: inherited accuracy against stand-alone training, beside today's proxy.

Networks: ``--networks`` architectures of the default space spread over its latency range on host TFLite
(3,000 seeded samples sorted by predicted latency, taken at evenly spaced quantiles). For each:

- *inherited*: the shipped supernet's weights (``hwnas/supernets/default``), BatchNorm re-estimated on the first 512
  training images (``hwnas.trainer.BATCHNORM_IMAGES``), no training;
- *proxy*: today's per-candidate signal, one epoch of the default recipe on the first 2,000 training images;
- *stand-alone*: trained from scratch with the supernet's own recipe for its epochs on the same embedded
  training images, with ``--seeds`` seeds (the ceiling: how well one seed ranks another).

Networks are completed one at a time (all four accuracies), in an order that keeps any finished prefix spread
over the latency range (:func:`spread_order`), so the summary of a run that is still going already means something.

Every accuracy is on the full 10,000-image Fashion-MNIST test set (Debian's ``dataset-fashion-mnist``), which
the embedded training images are not drawn from. Each finished (network, kind, seed) is appended to the
results file at once, so a killed run resumes where it stopped; ``--networks`` can grow between runs.

Two processes (or more) can share the work, one core each: ``--shard K/N`` takes every N-th unit of the plan from the
K-th, and each finished row is merged into the file under a lock, so no process drops another's rows.

Writes ``benchmarks/results/supernet_fidelity.json``.

    .venv/bin/python benchmarks/supernet_fidelity.py --networks 30 --seeds 2 --threads 1 [--shard 0/2]
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "benchmarks" / "results" / "supernet_fidelity.json"
PROXY_IMAGES = 2000
# the table the networks are spread by (the 3-epoch rows' too): the table matching another machine would pick other
# networks, and the rows of one file, made on several machines over several sessions, must rank one set
TABLE = ROOT / "latency_tables" / "data" / "default-host-cpu-tflite-xnnpack-amd-epyc.json"


def spread_archs(count: int) -> list[tuple[str, float]]:
    """``count`` architectures at evenly spaced quantiles of predicted host-TFLite latency (string, ms)."""
    from hwnas.presets import get_space
    from hwnas.search.device import load_device_latency

    space = get_space("default")
    device = load_device_latency("host-tflite", space, TABLE, allow_mismatch=True)
    samples = list({arch.format(): arch for arch in (space.sample(seed) for seed in range(3000))}.values())
    predicted = device.predict(samples)
    order = np.argsort(predicted)
    picks = np.linspace(0, len(order) - 1, count).round().astype(int)
    return [(samples[order[i]].format(), float(predicted[order[i]])) for i in picks]


def spread_order(count: int) -> list[int]:
    """Indices 0..count-1, each next one the farthest from those before (the ends first): a run stopped after any
    number of networks has them spread over the whole latency range, and the next run completes the same set."""
    if count <= 0:
        return []
    order = [0, count - 1] if count > 1 else [0]
    while len(order) < count:
        order.append(max((i for i in range(count) if i not in order), key=lambda i: (min(abs(i - j) for j in order), -i)))
    return order


def splits() -> Any:
    """Embedded training and validation images, the full Fashion-MNIST test set as the test split."""
    from hwnas.data import load_data

    embedded, full = load_data("embedded"), load_data("fashion-mnist")
    return replace(embedded, name="fashion-mnist-embedded+test10k", test=full.test)


def load_rows() -> list[dict[str, Any]]:
    return json.loads(RESULT.read_text())["rows"] if RESULT.exists() else []


def save(rows: list[dict[str, Any]], settings: dict[str, Any]) -> list[dict[str, Any]]:
    """``rows`` merged with those in the file now (another shard's), under a lock; returns all of them."""
    from shared_results import update_locked

    wanted = {entry["arch"] for entry in settings["archs"]}

    def merged(current: dict[str, Any]) -> dict[str, Any]:
        keyed = {(r["kind"], r["arch"], r["seed"]): r for r in [*current.get("rows", []), *rows] if r["arch"] in wanted}
        everything = list(keyed.values())
        return {"settings": settings, "rows": everything, "summary": summarize(everything, predicted_of(settings))}

    return update_locked(RESULT, merged)["rows"]


def predicted_of(settings: dict[str, Any]) -> dict[str, float]:
    return {entry["arch"]: entry["predicted_host_tflite_ms"] for entry in settings["archs"]}


def parse_shard(text: str) -> tuple[int, int]:
    """``K/N`` (0 <= K < N): this process takes plan units K, K+N, K+2N, ..."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard wants K/N, e.g. 0/2, got {text!r}") from None
    if not 0 <= index < count:
        raise argparse.ArgumentTypeError(f"--shard {text}: K must be in 0..N-1")
    return index, count


def measure(kind: str, arch_text: str, seed: int, data: Any, supernet: Any, info: dict[str, Any]) -> dict[str, Any]:
    """One accuracy on the test set: inherited, proxy or stand-alone."""
    import torch

    from hwnas.builder import recalibrate_batchnorm
    from hwnas.presets import get_space
    from hwnas.recipe import Recipe
    from hwnas.trainer import Prepared, batchnorm_images, evaluate, train

    space = get_space("default")
    arch = space.parse(arch_text)
    started = time.perf_counter()
    if kind == "inherited":
        model = supernet.extract(arch)
        recalibrate_batchnorm(model, batchnorm_images(data, arch.resolution, space.in_channels, model))
        with torch.inference_mode():
            accuracy = evaluate(model, Prepared(data.test, arch.resolution, space.in_channels))
    else:
        recipe = Recipe.from_json(info["recipe"]) if kind == "standalone" else Recipe(epochs=1)
        used = data if kind == "standalone" else data.head(PROXY_IMAGES, len(data.val))
        accuracy = train(space, arch, recipe, used, seed=seed, progress=False, evaluate_test=True).test_accuracy
    return {"kind": kind, "arch": arch_text, "seed": seed, "test_accuracy": accuracy, "seconds": time.perf_counter() - started}


def kendall(values: Any, reference: Any) -> float:
    from scipy.stats import kendalltau

    return float(kendalltau(values, reference).statistic)


def agreement(values: list[float], reference: list[float], resamples: int = 2000) -> dict[str, Any]:
    """Kendall tau and Spearman of ``values`` against ``reference``, with a 95% bootstrap interval of tau over the
    networks (30 networks leave tau uncertain by about +-0.25: the interval says how much a difference means)."""
    from scipy.stats import bootstrap, spearmanr

    interval = bootstrap(
        (np.asarray(values), np.asarray(reference)), kendall, paired=True, vectorized=False, n_resamples=resamples,
        method="percentile", random_state=0,
    ).confidence_interval
    return {
        "kendall_tau": kendall(values, reference),
        "kendall_tau_ci95": [float(interval.low), float(interval.high)],
        "spearman": float(spearmanr(values, reference).statistic),
    }


@functools.cache
def zero_cost(arch_text: str) -> dict[str, float]:
    """What a user ranks by without training: FLOPs and parameters (torch's counter, the builder's network); cached,
    since every saved row summarizes the file again and a network's FLOPs never change."""
    from hwnas.builder import build_model, count_flops, count_params, input_shape
    from hwnas.presets import get_space

    space = get_space("default")
    arch = space.parse(arch_text)
    model = build_model(space, arch)
    return {"flops": float(count_flops(model, input_shape(space, arch))), "params": float(count_params(model))}


def summarize(rows: list[dict[str, Any]], predicted_ms: dict[str, float]) -> dict[str, Any]:
    """Kendall tau and Spearman of inherited and proxy against the stand-alone mean, and of one seed against another;
    beside them the zero-cost rankings (FLOPs, parameters, predicted latency: bigger is better) and inherited against
    each single seed, which is what the seed-vs-seed ceiling compares like with like."""
    table: dict[str, dict[str, dict[int, float]]] = {}
    for row in rows:
        table.setdefault(row["arch"], {}).setdefault(row["kind"], {})[row["seed"]] = row["test_accuracy"]
    seeds = sorted({row["seed"] for row in rows if row["kind"] == "standalone"})
    complete = [
        a for a, kinds in table.items() if {"inherited", "proxy"} <= set(kinds) and set(kinds.get("standalone", {})) >= set(seeds)
    ]
    if len(complete) < 3 or not seeds:
        return {"networks_complete": len(complete)}
    standalone = [float(np.mean([table[a]["standalone"][s] for s in seeds])) for a in complete]
    inherited = [table[a]["inherited"][0] for a in complete]
    costs = [zero_cost(a) for a in complete]
    summary: dict[str, Any] = {
        "networks_complete": len(complete),
        "seeds": seeds,
        "inherited_vs_standalone": agreement(inherited, standalone),
        "proxy_vs_standalone": agreement([table[a]["proxy"][0] for a in complete], standalone),
        "flops_vs_standalone": agreement([c["flops"] for c in costs], standalone),
        "params_vs_standalone": agreement([c["params"] for c in costs], standalone),
        "predicted_latency_vs_standalone": agreement([predicted_ms[a] for a in complete], standalone),
        "standalone_accuracy_range": [min(standalone), max(standalone)],
    }
    if len(seeds) >= 2:
        first, second = ([table[a]["standalone"][seed] for a in complete] for seed in seeds[:2])
        summary["ceiling_seed_vs_seed"] = agreement(first, second)
        summary["inherited_vs_single_seed_mean_tau"] = float(np.mean([kendall(inherited, one) for one in (first, second)]))
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", type=int, default=30)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--shard", type=parse_shard, default=(0, 1), help="K/N: every N-th unit from the K-th")
    parser.add_argument("--summary", action="store_true", help="only recompute the file's summary from its rows")
    args = parser.parse_args()
    if args.summary:
        recorded = json.loads(RESULT.read_text())
        save(recorded["rows"], recorded["settings"])
        print(json.dumps(json.loads(RESULT.read_text())["summary"], indent=2))
        return
    import torch

    from hwnas.supernet.store import load_supernet
    from hwnas.supernets import DEFAULT_SUPERNET

    if args.threads:
        torch.set_num_threads(args.threads)
    supernet, info = load_supernet(DEFAULT_SUPERNET)
    data = splits()
    archs = spread_archs(args.networks)
    settings = {
        "supernet": str(DEFAULT_SUPERNET.relative_to(ROOT)),
        "supernet_epochs": info["epochs"],
        "recipe": info["recipe"],
        "proxy_images": PROXY_IMAGES,
        "test_images": len(data.test),
        "archs": [{"arch": a, "predicted_host_tflite_ms": ms} for a, ms in archs],
    }
    earlier = json.loads(RESULT.read_text())["settings"] if RESULT.exists() else settings
    if (earlier.get("supernet_epochs"), earlier.get("recipe")) != (info["epochs"], info["recipe"]):
        raise SystemExit(
            f"{RESULT} holds results of a {earlier.get('supernet_epochs')}-epoch supernet, the shipped one has "
            f"{info['epochs']}: move it aside (its inherited and stand-alone rows do not carry over)"
        )
    wanted = {a for a, _ in archs}
    rows = [row for row in load_rows() if row["arch"] in wanted]  # rows of another --networks' picks are dropped
    done = {(row["kind"], row["arch"], row["seed"]) for row in rows}
    plan = [
        (kind, archs[i][0], seed)
        for i in spread_order(len(archs))
        for kind, seed in [("inherited", 0), ("proxy", 0), *(("standalone", s) for s in range(args.seeds))]
    ]
    shard, shards = args.shard
    for index, (kind, arch, seed) in enumerate(plan):
        if (kind, arch, seed) in done or index % shards != shard:
            continue
        row = measure(kind, arch, seed, data, supernet, info)
        rows = save([*rows, row], settings)
        score = f"{row['test_accuracy']:.4f} ({row['seconds']:.0f} s)"
        print(f"[{index + 1}/{len(plan)}] {kind} seed {seed}: {score} {arch}", flush=True)
    rows = save(rows, settings)
    print(json.dumps(summarize(rows, predicted_of(settings)), indent=2))


if __name__ == "__main__":
    main()
