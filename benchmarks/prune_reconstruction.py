"""Does AMC's least-squares reconstruction help, and does re-estimating BatchNorm? And how slow are odd widths?

    flock /tmp/hwnas-cpu.lock .venv/bin/python benchmarks/prune_reconstruction.py --train-epochs 8

1. Policies (uniform, and random clipped ones) at 30/50/70% FLOPs of the trained default-preset
   model, scored on 1000 held-out images with no fine-tuning: raw pruning, + BatchNorm
   re-estimation (256 training images), + least-squares refit, + both.
2. Odd widths: the same uniform policies with channel counts rounded to 1 (any width) and to 8,
   exported to ONNX and TFLite and timed on this CPU (1 thread): ms per MFLOP.

Writes benchmarks/results/prune_reconstruction.json.
"""

from __future__ import annotations

import argparse
import copy
import random
import tempfile
from pathlib import Path

import torch
from prune_common import RESULTS, trained_base

from hwnas.builder import recalibrate_batchnorm
from hwnas.data import load_data
from hwnas.devices import DeviceSpec, make_backend
from hwnas.exporters import get_exporter
from hwnas.fileio import atomic_write_json
from hwnas.pruning.amc import Environment, accuracy
from hwnas.pruning.baselines import uniform_counts
from hwnas.pruning.budget import Resource
from hwnas.pruning.job import stack
from hwnas.pruning.reconstruct import collect_features, reconstruct
from hwnas.pruning.structure import analyse, apply_counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-epochs", type=int, default=8)
    parser.add_argument("--policies", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(2)
    data = load_data()
    base, base_info = trained_base("default", data, args.train_epochs)
    images, labels = stack(data.val, 1000, base.resolution, base.channels)
    calibration, _ = stack(data.train, 400, base.resolution, base.channels)
    graph = analyse(base.module, torch.zeros(tuple(base.input_shape)))
    features = collect_features(base.module, calibration, {n for n, _ in base.module.named_modules()})
    resource = Resource("flops", "FLOPs", graph.flops)
    rows = []
    for ratio in (0.3, 0.5, 0.7):
        target = ratio * graph.flops(graph.full_counts)
        env = Environment(graph, resource, target)
        draws = random.Random(0)
        policies = [("uniform", uniform_counts(graph, resource, target))]
        policies += [(f"random-{i}", env.rollout(lambda _s, rng=draws: rng.uniform(0.2, 1.0))[1]) for i in range(args.policies)]
        for name, counts in policies:
            pruned = apply_counts(base.module, graph, counts)
            scores = {"raw": accuracy(pruned.module, images, labels)}
            bn = recalibrate_batchnorm(copy.deepcopy(pruned.module), calibration[:256], batch=128)
            scores["bn"] = accuracy(bn, images, labels)
            refit = copy.deepcopy(pruned.module)
            reconstruct(refit, features, pruned.kept_in, pruned.kept_out)
            scores["reconstruct"] = accuracy(refit, images, labels)
            scores["reconstruct+bn"] = accuracy(recalibrate_batchnorm(refit, calibration[:256], batch=128), images, labels)
            rows.append(
                {"flops_budget": ratio, "policy": name, "flops_ratio": graph.flops(counts) / graph.flops(graph.full_counts)}
                | scores
            )
            print(rows[-1], flush=True)
    mean = {key: sum(r[key] for r in rows) / len(rows) for key in ("raw", "bn", "reconstruct", "reconstruct+bn")}
    result = {
        "base": base_info,
        "heldout_images": len(images),
        "policies": rows,
        "mean_accuracy": mean,
        "odd_widths": odd_widths(base),
    }
    atomic_write_json(RESULTS / "prune_reconstruction.json", result)
    print(result["mean_accuracy"], result["odd_widths"], flush=True)


def odd_widths(base) -> list[dict]:
    """Uniform pruning with any width vs multiples of 8: measured latency per MFLOP on ONNX Runtime and TFLite."""
    example = torch.zeros(tuple(base.input_shape))
    rows = []
    for ratio in (0.5, 0.7):
        for round_to in (1, 8):
            graph = analyse(base.module, example, round_to=round_to)
            resource = Resource("flops", "FLOPs", graph.flops)
            counts = uniform_counts(graph, resource, ratio * graph.flops(graph.full_counts))
            module = apply_counts(base.module, graph, counts).module
            row = {"flops_budget": ratio, "round_to": round_to, "mflops": graph.flops(counts) / 1e6}
            row["odd_counts"] = sum(c % 8 != 0 for c in counts)
            for fmt, spec_name in (("onnx", "host-ort"), ("tflite", "host-tflite")):
                exporter = get_exporter(fmt)
                if exporter.unavailable_reason() is not None:
                    continue
                spec = DeviceSpec.from_toml(spec_name)
                with tempfile.TemporaryDirectory() as folder:
                    path = exporter.export(module.eval(), example, Path(folder) / f"model{exporter.suffix}")
                    measured = make_backend(spec).measure(path).median_ms
                row[f"{fmt}_ms"] = measured
                row[f"{fmt}_ms_per_mflop"] = measured / row["mflops"]
            rows.append(row)
            print(row, flush=True)
    return rows


if __name__ == "__main__":
    main()
