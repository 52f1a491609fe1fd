"""A latency-budget pruning run: 60% of the unpruned model's latency measured on host TFLite (XNNPACK, 1 thread).

    flock /tmp/hwnas-cpu.lock .venv/bin/python benchmarks/prune_latency_budget.py --train-epochs 8

The agent's resource model is the device's predicted latency of the pruned layers (table entries
and layer models); the pruned model is then exported and measured. Writes
benchmarks/results/prune_latency_budget.json: the budget, predicted and measured latency before
and after, whether it measured within budget, and any tightened repeats.
"""

from __future__ import annotations

import argparse
import shutil

import torch
from prune_common import CACHE, RESULTS, trained_base

from hwnas.data import load_data
from hwnas.devices import DeviceSpec
from hwnas.fileio import atomic_write_json
from hwnas.latency_tables.drift import device_table
from hwnas.latency_tables.table import LatencyTable
from hwnas.pruning.budget import Budget
from hwnas.pruning.job import PruneConfig, measure_folder, run_prune
from hwnas.recipe import Recipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("default", "mobilenet_v2"), default="default")
    parser.add_argument("--train-epochs", type=int, default=8)
    parser.add_argument("--share", type=float, default=0.6)
    parser.add_argument("--episodes", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = load_data()
    base, base_info = trained_base(args.model, data, args.train_epochs)
    spec = DeviceSpec.from_toml("host-tflite")
    table_path = device_table(spec)
    folder = CACHE / f"{args.model}-{args.train_epochs}ep"
    unpruned = measure_folder(folder, ("tflite",), [spec], None, print)["latency_ms"][spec.name]
    budget_ms = args.share * unpruned
    print(f"unpruned measures {unpruned:.4f} ms on {spec.name}: budget {budget_ms:.4f} ms", flush=True)
    out = CACHE / f"prune-{args.model}-latency"
    shutil.rmtree(out, ignore_errors=True)
    config = PruneConfig(
        Budget("latency-ms", budget_ms),
        episodes=args.episodes,
        finetune=Recipe(epochs=1, lr=0.02, warmup_epochs=0.0),
        baselines=False,
        formats=("onnx", "tflite"),
        devices=("host-tflite", "host-ort"),
    )
    report = run_prune(base, data, config, out, table=LatencyTable.load(table_path), log=lambda m: print(m, flush=True))
    amc = report["models"]["amc"]
    measured = amc["measured"]["latency_ms"][spec.name]
    result = {
        "model": args.model,
        "base": base_info,
        "device": spec.name,
        "table": str(table_path),
        "unpruned_measured_ms_before_search": unpruned,
        "budget_ms": budget_ms,
        "unpruned": {
            k: report["models"]["unpruned"][k] for k in ("test_accuracy", "flops", "params", "predicted_ms", "measured")
        },
        "amc": {k: amc[k] for k in ("test_accuracy", "flops", "params", "predicted_ms", "measured", "counts")},
        "amc_measured_ms": measured,
        "within_budget": measured <= budget_ms,
        "latency_retries": report["latency_retries"],
        "searches": [{"budget": s["budget"], "best": s["best"]} for s in report["searches"]],
        "settings": vars(args),
    }
    atomic_write_json(RESULTS / "prune_latency_budget.json", result)
    print(result, flush=True)


if __name__ == "__main__":
    main()
