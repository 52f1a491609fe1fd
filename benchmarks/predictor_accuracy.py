"""Does FLOPs/params pre-training help the FBNetV3 accuracy predictor? Kendall tau with and without it.

Reads the measured (arch, recipe, accuracy) pairs; for each labelled-set size and each of
``--splits`` random splits, fits the predictor on that many pairs and ranks the rest (held out),
once from an encoder pre-trained on FLOPs and params of ``--pretrain-samples`` sampled pairs and
once from a random encoder: same network, same schedule, same labelled pairs. Taus are averaged
over the splits (and over ``--seeds`` encoder seeds) so one lucky split cannot decide. Also reported:
the tau of FLOPs alone and of params alone as rankers (the no-learning baselines).

Writes ``benchmarks/results/predictor_accuracy.json``.

    .venv/bin/python benchmarks/predictor_accuracy.py --pairs predictors/data/accuracy-pairs-default.json
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hwnas.predictors.accuracy import AccuracyPredictor, read_pairs  # noqa: E402
from hwnas.predictors.registry import hyperparameters_of  # noqa: E402
from hwnas.presets import get_space  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=Path, default=ROOT / "predictors" / "data" / "accuracy-pairs-default.json")
    parser.add_argument("--space", default="default")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 20, 30])
    parser.add_argument("--splits", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=2, help="encoder initialisation / pre-training seeds")
    parser.add_argument("--pretrain-samples", type=int, default=4000)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "predictor_accuracy.json")
    args = parser.parse_args()

    started = time.perf_counter()
    space = get_space(args.space)
    archs, recipes, accuracy, how = read_pairs(args.pairs, space)
    acc = np.array(accuracy)
    flops = np.array([p["flops"] for p in json.loads(args.pairs.read_text())["pairs"]], dtype=float)
    params = np.array([p["params"] for p in json.loads(args.pairs.read_text())["pairs"]], dtype=float)
    bases = {}
    for seed in range(args.seeds):
        with_pre = AccuracyPredictor(space, pretrain_samples=args.pretrain_samples, seed=seed).pretrain()
        without = AccuracyPredictor(space, pretrain_samples=0, seed=seed).pretrain()
        bases[seed] = {"pretrained": with_pre, "random_init": without}
    results = []
    for size in args.sizes:
        if size >= len(acc) - 5:
            print(f"skip size {size}: only {len(acc)} pairs")
            continue
        taus: dict[str, list[float]] = {"pretrained": [], "random_init": [], "flops": [], "params": []}
        for split in range(args.splits):
            order = np.random.default_rng(1000 + split).permutation(len(acc))
            train, test = order[:size], order[size:]
            taus["flops"].append(kendalltau(flops[test], acc[test]).statistic)
            taus["params"].append(kendalltau(params[test], acc[test]).statistic)
            for seed, variants in bases.items():
                for name, base in variants.items():
                    model = copy.deepcopy(base)
                    model.seed = seed * 100 + split
                    model.fit([archs[i] for i in train], [recipes[i] for i in train], acc[train])
                    predicted = model.predict([archs[i] for i in test], [recipes[i] for i in test])
                    taus[name].append(kendalltau(predicted, acc[test]).statistic)
        row = {
            "labelled_pairs": size,
            "held_out_pairs": len(acc) - size,
            "runs": len(taus["pretrained"]),
            **{f"tau_{name}_mean": float(np.mean(v)) for name, v in taus.items()},
            **{f"tau_{name}_std": float(np.std(v)) for name, v in taus.items()},
            "pretrained_better_share": float(np.mean(np.array(taus["pretrained"]) > np.array(taus["random_init"]))),
        }
        results.append(row)
        print(
            f"n={size:3d}: tau pretrained {row['tau_pretrained_mean']:.3f}±{row['tau_pretrained_std']:.3f}  "
            f"random init {row['tau_random_init_mean']:.3f}±{row['tau_random_init_std']:.3f}  "
            f"FLOPs {row['tau_flops_mean']:.3f}  params {row['tau_params_mean']:.3f}  "
            f"(pretrained better in {row['pretrained_better_share']:.0%} of runs)",
            flush=True,
        )
    pretrain_losses = {seed: v["pretrained"].pretrain_loss_ for seed, v in bases.items()}
    report = {
        "command": " ".join(["benchmarks/predictor_accuracy.py", *sys.argv[1:]]),
        "pairs_file": str(args.pairs),
        "pairs": len(acc),
        "how_pairs_were_made": how,
        "accuracy_range": [float(acc.min()), float(acc.max())],
        "accuracy_median": float(np.median(acc)),
        "pretrain_samples": args.pretrain_samples,
        "pretrain_final_mse_standardised": pretrain_losses,
        "splits": args.splits,
        "seeds": args.seeds,
        "hyperparameters": hyperparameters_of(AccuracyPredictor(space)),
        "results": results,
        "wall_s": round(time.perf_counter() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
