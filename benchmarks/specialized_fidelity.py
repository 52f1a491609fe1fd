"""Fidelity of the final networks: specialized networks fine-tuned from inherited weights against the same
architectures trained from scratch.

For every architecture ``benchmarks/specialize_cost.py`` specialized (``benchmarks/results/specialize_cost.json``),
three test accuracies on the full 10,000-image Fashion-MNIST test set (Debian's ``dataset-fashion-mnist``; training
and validation images are the embedded ones the shipped supernet was trained on):

- ``inherited``: the subnetwork with the weights it inherits from the shipped supernet, BatchNorm re-estimated;
- ``finetuned``: the same after ``--finetune-epochs`` (default 1) of fine-tuning, as ``hwnas specialize`` does it
  (``hwnas.search.result.from_supernet``: the supernet's recipe at its full learning rate, no warm-up, taught by its
  largest subnetwork at ``--distill``; the committed results files' rows are labels-only, ``finetune_distill`` 0);
- ``scratch``: the architecture trained from scratch with the supernet's recipe for the supernet's epochs, per seed.

The issue's aim: fine-tuned within 1 point of scratch, or ahead. Rows are written as they finish; rerunning resumes.

    nice -n 19 .venv/bin/python benchmarks/specialized_fidelity.py --seeds 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from supernet_fidelity import splits  # the embedded images with the full test set, as the fidelity benchmark scores

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "benchmarks" / "results" / "specialize_cost.json"
RESULT = ROOT / "benchmarks" / "results" / "specialized_fidelity.json"


def measure(
    kind: str, arch_text: str, seed: int, data: Any, folder: Path, info: dict[str, Any], epochs: int, distill: float
) -> dict[str, Any]:
    from hwnas.recipe import Recipe
    from hwnas.search.inherited import loaded_supernet
    from hwnas.search.result import from_supernet
    from hwnas.trainer import train

    supernet, _ = loaded_supernet(folder)  # loaded once per process, as from_supernet loads it
    arch = supernet.space.parse(arch_text)
    recipe = Recipe.from_json(info["recipe"])
    started = time.perf_counter()
    if kind == "scratch":
        result = train(supernet.space, arch, recipe, data, seed=seed, progress=False, evaluate_test=True)
    else:
        result, _ = from_supernet(folder, arch, recipe, data, epochs if kind == "finetuned" else 0, seed, distill=distill)
    return {"kind": kind, "arch": arch_text, "seed": seed, "test_accuracy": result.test_accuracy,
            "seconds": time.perf_counter() - started}  # fmt: skip


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    by_arch: dict[str, dict[str, list[float]]] = {}
    for row in rows:
        by_arch.setdefault(row["arch"], {}).setdefault(row["kind"], []).append(row["test_accuracy"])
    complete = {arch: kinds for arch, kinds in by_arch.items() if {"inherited", "finetuned", "scratch"} <= set(kinds)}
    scratch = {arch: statistics.mean(kinds["scratch"]) for arch, kinds in complete.items()}
    gaps = {arch: (statistics.mean(kinds["finetuned"]) - scratch[arch]) * 100 for arch, kinds in complete.items()}
    inherited_gaps = {arch: (statistics.mean(kinds["inherited"]) - scratch[arch]) * 100 for arch, kinds in complete.items()}
    return {
        "architectures": len(complete),
        "finetuned_minus_scratch_points": gaps,
        "finetuned_minus_scratch_mean": statistics.mean(gaps.values()) if gaps else None,
        "within_1_point_or_ahead": sum(gap >= -1.0 for gap in gaps.values()),
        "inherited_minus_scratch_mean": statistics.mean(inherited_gaps.values()) if inherited_gaps else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=1, help="seeds of scratch training")
    parser.add_argument("--finetune-epochs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--distill", type=float, default=None,
        help="weight of the largest subnetwork's teaching in fine-tuning (default: hwnas specialize's, FINETUNE_DISTILL)",
    )  # fmt: skip
    parser.add_argument("--supernet", default="default", help="the supernet (default: the shipped one)")
    parser.add_argument("--out", type=Path, default=RESULT, help="results file")
    parser.add_argument("--source", type=Path, default=SOURCE, help="the specialize_cost results whose networks are compared")
    parser.add_argument(
        "--scratch-from", type=Path, default=None,
        help="take the scratch rows from this results file instead of training (its supernet's epochs: said in the settings)",
    )  # fmt: skip
    args = parser.parse_args()

    import torch

    from hwnas.fileio import atomic_write_json
    from hwnas.search.inherited import loaded_supernet
    from hwnas.search.result import FINETUNE_DISTILL
    from hwnas.supernets import resolve_supernet

    torch.set_num_threads(args.threads)
    distill = FINETUNE_DISTILL if args.distill is None else args.distill
    folder = resolve_supernet(args.supernet, given_as="--supernet")
    _, info = loaded_supernet(folder)
    result = args.out
    archs = list(dict.fromkeys(network["arch"] for network in json.loads(args.source.read_text())["networks"] if network["arch"]))
    data = splits()
    settings = {"supernet": args.supernet, "supernet_epochs": info["recipe"]["epochs"], "recipe": info["recipe"],
                "finetune_epochs": args.finetune_epochs, "finetune_distill": distill, "test_images": len(data.test),
                "source": args.source.name}  # fmt: skip
    if args.scratch_from is not None:
        scratch_source = json.loads(args.scratch_from.read_text())
        epochs = scratch_source["settings"]["supernet_epochs"]
        settings["scratch_from"] = {"file": args.scratch_from.name, "supernet_epochs": epochs}
    previous = json.loads(result.read_text()) if result.exists() else {}
    rows: list[dict[str, Any]] = previous.get("rows", []) if previous.get("settings") == settings else []
    rows = [row for row in rows if row["arch"] in archs]  # another source's networks are not summarized with these
    if args.scratch_from is not None:
        taken = [r for r in scratch_source["rows"] if r["kind"] == "scratch" and r["arch"] in archs]
        rows = [r for r in rows if r["kind"] != "scratch"] + taken
    jobs = [(kind, arch, seed) for arch in archs for kind in ("inherited", "finetuned") for seed in (0,)]
    jobs += [] if args.scratch_from else [("scratch", arch, seed) for seed in range(args.seeds) for arch in archs]
    for number, (kind, arch, seed) in enumerate(jobs, 1):
        if any((r["kind"], r["arch"], r["seed"]) == (kind, arch, seed) for r in rows):
            continue
        row = measure(kind, arch, seed, data, folder, info, args.finetune_epochs, distill)
        rows.append(row)
        atomic_write_json(result, {"settings": settings, "rows": rows, "summary": summarize(rows)})
        shown = f"{kind} seed {seed}: {row['test_accuracy']:.4f} ({row['seconds']:.0f} s) {arch}"
        print(f"[{number}/{len(jobs)}] {shown}", flush=True)
    atomic_write_json(result, {"settings": settings, "rows": rows, "summary": summarize(rows)})
    print(json.dumps(summarize(rows), indent=1))


if __name__ == "__main__":
    main()
