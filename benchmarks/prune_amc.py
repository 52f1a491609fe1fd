"""AMC vs uniform vs global magnitude pruning at several FLOPs budgets: accuracy after the same fine-tuning,
measured ONNX Runtime and TFLite latency (speedup over the unpruned model) on this machine.

    flock /tmp/hwnas-cpu.lock .venv/bin/python benchmarks/prune_amc.py --model default --train-epochs 8
    flock /tmp/hwnas-cpu.lock .venv/bin/python benchmarks/prune_amc.py --model mobilenet_v2 --train-epochs 2 --ratios 0.5
    .venv/bin/python benchmarks/prune_amc.py --data fashion-mnist --distill 0.7 --tag distill --ratios 0.5

``--data fashion-mnist`` trains on the first ``--train-images`` of the full training split and tests on all 10,000
test images (a standard error of about 0.33 points at 88%, against 0.73 on the embedded 2,000). ``--distill W``: every
pruned model's fine-tuning (AMC's and the baselines' alike) is taught by the unpruned network with weight W.

Writes benchmarks/results/prune_amc_<model>.json and .png. The base network is trained once and
kept in runs/bench-prune/.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import time

import torch
from prune_common import CACHE, RESULTS, trained_base

from hwnas.data import load_data
from hwnas.fileio import atomic_write_json
from hwnas.pruning.budget import Budget
from hwnas.pruning.job import PruneConfig, run_prune
from hwnas.recipe import Recipe

METHODS = ("amc", "uniform", "global-magnitude")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("default", "mobilenet_v2"), default="default")
    parser.add_argument("--train-epochs", type=int, default=8)
    parser.add_argument("--ratios", default="0.3,0.5,0.7")
    parser.add_argument("--episodes", type=int, default=40)
    parser.add_argument("--finetune-epochs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--finetune-images", type=int, default=None, help="fine-tune on the first N training images only")
    parser.add_argument("--data", default=None, help="embedded (default) or fashion-mnist (10,000 test images)")
    parser.add_argument("--train-images", type=int, default=9000, help="with --data: the first N training images")
    parser.add_argument("--distill", type=float, default=0.0, help="weight of the unpruned model's soft labels")
    parser.add_argument("--distill-temperature", type=float, default=4.0)
    parser.add_argument("--tag", default="", help="suffix of the result files")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = load_data(args.data)
    if args.data is not None:
        data = data.head(args.train_images, 1000)
    base, base_info = trained_base(args.model, data, args.train_epochs)
    if args.finetune_images:  # the test split stays whole: accuracies are always on the same 2,000 images
        data = data.head(args.finetune_images, 1000)
    print(f"base {args.model}: {base_info}", flush=True)
    runs = []
    for ratio in [float(r) for r in args.ratios.split(",")]:
        out = CACHE / f"prune-{args.model}-flops{ratio}{'-' + args.tag if args.tag else ''}"
        shutil.rmtree(out, ignore_errors=True)
        config = PruneConfig(
            Budget("flops", ratio),
            episodes=args.episodes,
            finetune=Recipe(
                epochs=args.finetune_epochs,
                lr=0.02,
                warmup_epochs=0.0,
                distill=args.distill,
                distill_temperature=args.distill_temperature,
            ),
        )
        started = time.perf_counter()
        report = run_prune(base, data, config, out, log=lambda m: print(m, flush=True), on_episode=_show)
        runs.append(_summarise(ratio, report, time.perf_counter() - started))
        print(runs[-1]["table"], flush=True)
        result = {  # written after every budget: a slow machine still leaves the budgets it finished
            "model": args.model,
            "base": base_info,
            "resolution": base.resolution,
            "settings": vars(args),
            "machine": {"cpu": platform.processor() or platform.machine(), "threads": args.threads},
            "runs": sorted(runs, key=lambda run: run["flops_budget"]),
        }
        name = f"prune_amc_{args.model}{'_' + args.tag if args.tag else ''}"
        result["test_images"] = len(data.test)  # type: ignore[arg-type]
        atomic_write_json(RESULTS / f"{name}.json", result)
        _plot(result, RESULTS / f"{name}.png")


def _show(progress) -> None:
    if progress.episode % 10 == 0 or progress.episode == progress.episodes:
        print(f"  episode {progress.episode}/{progress.episodes}: best reward {progress.best.reward:.4f}", flush=True)


def _summarise(ratio: float, report: dict, seconds: float) -> dict:
    models = report["models"]
    unpruned = models["unpruned"]
    table = {}
    for name, entry in models.items():
        latency = entry["measured"]["latency_ms"]
        table[name] = {
            "test_accuracy": entry["test_accuracy"],
            "heldout_accuracy_before_finetune": entry.get("heldout_accuracy_before_finetune"),
            "flops_ratio": entry["flops"] / unpruned["flops"],
            "params_ratio": entry["params"] / unpruned["params"],
            "latency_ms": latency,
            "speedup": {d: unpruned["measured"]["latency_ms"][d] / ms for d, ms in latency.items()},
            "verification": entry["measured"]["verification"],
            "counts": entry.get("counts"),
        }
    best = report["searches"][-1]["best"]
    return {
        "flops_budget": ratio,
        "table": table,
        "amc_best_episode": best["episode"],
        "amc_best_reward": best["reward"],
        "episodes": len(report["searches"][-1]["episodes"]),
        "rewards": [e["reward"] for e in report["searches"][-1]["episodes"]],
        "seconds": seconds,
    }


def _plot(result: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for method in METHODS:
        points = [(run["table"][method]["flops_ratio"], run["table"][method]) for run in result["runs"]]
        left.plot([p[0] for p in points], [p[1]["test_accuracy"] for p in points], "o-", label=method)
        right.plot(
            [p[0] for p in points],
            [p[1]["speedup"].get("host-cpu-tflite-xnnpack", float("nan")) for p in points],
            "o-",
            label=method,
        )
    unpruned = result["runs"][0]["table"]["unpruned"]["test_accuracy"]
    left.axhline(unpruned, color="grey", ls="--", label="unpruned")
    left.set(xlabel="FLOPs / unpruned", ylabel="test accuracy after fine-tuning", title=f"{result['model']}: accuracy")
    right.set(xlabel="FLOPs / unpruned", ylabel="measured speedup (TFLite XNNPACK, 1 thread)", title="speedup")
    left.legend()
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
