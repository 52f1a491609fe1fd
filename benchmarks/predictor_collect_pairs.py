"""Measure (architecture, recipe, accuracy) pairs for the FBNetV3 accuracy predictor by really training.

Each pair is one sampled architecture of the space with one sampled recipe (FBNetV3's joint space),
trained with ``hwnas.trainer.train`` on a small, stated proxy budget of the embedded Fashion-MNIST
subset (``--train`` / ``--val`` images, ``--epochs`` epochs) and scored on the validation images.
Proxy accuracies rank candidates; they are not the accuracies of full training, and the file says
how they were made. The list of candidates is fixed by ``--seed``; the file is rewritten
atomically after every pair, so a killed run resumes where it stopped.

    .venv/bin/python benchmarks/predictor_collect_pairs.py --pairs 50 --out predictors/data/accuracy-pairs-default.json
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hwnas.data import load_data  # noqa: E402
from hwnas.fileio import atomic_write_json  # noqa: E402
from hwnas.formats import FORMATS  # noqa: E402
from hwnas.predictors.accuracy import sample_recipe  # noqa: E402
from hwnas.presets import get_space  # noqa: E402
from hwnas.trainer import train  # noqa: E402


def _budget(how: dict) -> dict:
    """What makes two pairs comparable: everything about how they were made except the command line."""
    return {key: value for key, value in how.items() if key != "command"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="default")
    parser.add_argument("--pairs", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train", type=int, default=9000, help="training images (first N of the embedded split)")
    parser.add_argument("--val", type=int, default=1000, help="validation images")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--budget-s", type=float, default=None, help="stop starting new pairs after this many seconds")
    parser.add_argument("--out", type=Path, default=ROOT / "predictors" / "data" / "accuracy-pairs-default.json")
    args = parser.parse_args()

    space = get_space(args.space)
    rng = random.Random(args.seed)
    candidates = [(space.sample(rng), sample_recipe(rng, epochs=args.epochs)) for _ in range(args.pairs)]
    how = {
        "command": " ".join(["benchmarks/predictor_collect_pairs.py", *sys.argv[1:]]),
        "data": f"embedded Fashion-MNIST subset, first {args.train} training / {args.val} validation images (ImageSplits.head)",
        "epochs": args.epochs,
        "threads": args.threads,
        "candidate_seed": args.seed,
        "train_seed": 0,
        "sampling": "space.sample + predictors.accuracy.sample_recipe, one random.Random(candidate_seed) stream",
        "metric": "val_accuracy (top-1 on the validation images)",
    }
    done: list[dict] = []
    if args.out.exists():
        previous = json.loads(args.out.read_text())
        if previous.get("space_hash") != space.hash or _budget(previous.get("how", {})) != _budget(how):
            sys.exit(f"{args.out} holds pairs of another space or proxy budget; pass another --out")
        done = previous["pairs"]
    data = load_data().head(args.train, args.val)
    started = time.perf_counter()
    for index, (arch, recipe) in enumerate(candidates):
        if index < len(done):
            assert done[index]["arch"] == arch.format(), "the candidate list changed; use another --out"
            continue
        if args.budget_s is not None and time.perf_counter() - started > args.budget_s:
            print(f"budget of {args.budget_s} s reached after {len(done)} pairs")
            break
        result = train(space, arch, recipe, data, seed=0, threads=args.threads, progress=False)
        done.append(
            {
                "arch": arch.format(),
                "recipe": recipe.to_json(),
                "val_accuracy": result.val_accuracy,
                "flops": result.flops,
                "params": result.params,
                "wall_time_s": round(result.wall_time_s, 2),
            }
        )
        pairs = {"space": space.name, "space_hash": space.hash, "how": how, "pairs": done}
        atomic_write_json(args.out, FORMATS["accuracy-pairs"].stamp(pairs))
        print(
            f"{len(done):3d}/{args.pairs} acc {result.val_accuracy:.4f} in {result.wall_time_s:.1f} s  {arch.format()} "
            f"{recipe.optimizer} lr={recipe.lr}",
            flush=True,
        )
    print(f"{len(done)} pairs -> {args.out}")


if __name__ == "__main__":
    main()
