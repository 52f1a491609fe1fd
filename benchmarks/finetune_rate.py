"""The fine-tuning learning rate on the shipped supernet: one epoch from inherited weights at several fractions of
the supernet's learning rate, for the networks ``benchmarks/specialize_cost.py`` specialized.

``hwnas specialize`` fine-tunes at :data:`hwnas.search.result.FINETUNE_LR_SCALE` of the supernet's rate, a value
chosen on the 3-epoch supernet, whose weights were far from converged; this re-measures it on the supernet shipped
now. Test accuracy on the full 10,000-image Fashion-MNIST test set, one seed (the seed ``specialize`` uses), each
network at every scale, so the comparison is paired. Rows are written as they finish; rerunning resumes.

Writes ``benchmarks/results/finetune_rate.json``.

    .venv/bin/python benchmarks/finetune_rate.py --scales 1 0.3 0.1 --threads 1
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
RESULT = ROOT / "benchmarks" / "results" / "finetune_rate.json"


def finetune(arch_text: str, scale: float, data: Any, folder: Path, epochs: int) -> dict[str, Any]:
    """One network fine-tuned at ``scale`` of the supernet's rate, as ``hwnas specialize`` does it otherwise."""
    from hwnas.recipe import Recipe
    from hwnas.search.inherited import loaded_supernet
    from hwnas.search.result import from_supernet

    supernet, info = loaded_supernet(folder)
    started = time.perf_counter()
    result, _ = from_supernet(folder, supernet.space.parse(arch_text), Recipe.from_json(info["recipe"]), data, epochs, 0, scale)
    return {"arch": arch_text, "scale": scale, "test_accuracy": result.test_accuracy, "seconds": time.perf_counter() - started}


def summarize(rows: list[dict[str, Any]], scales: list[float]) -> dict[str, Any]:
    """Per scale: mean test accuracy over the networks done at every scale, and its paired difference to the first."""
    by_arch: dict[str, dict[float, float]] = {}
    for row in rows:
        by_arch.setdefault(row["arch"], {})[row["scale"]] = row["test_accuracy"]
    complete = [accuracies for accuracies in by_arch.values() if set(scales) <= set(accuracies)]
    if not complete:
        return {"networks": 0}
    base = scales[0]
    return {
        "networks": len(complete),
        "mean_test_accuracy": {str(s): statistics.mean(a[s] for a in complete) for s in scales},
        f"minus_scale_{base:g}_points": {str(s): [round((a[s] - a[base]) * 100, 2) for a in complete] for s in scales[1:]},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0, 0.3, 0.1], help="fractions of the supernet's rate")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--source", type=Path, default=SOURCE, help="the specialize_cost results whose networks are tuned")
    args = parser.parse_args()

    import torch

    from hwnas.fileio import atomic_write_json
    from hwnas.search.inherited import loaded_supernet
    from hwnas.supernets import resolve_supernet

    torch.set_num_threads(args.threads)
    folder = resolve_supernet("default", given_as="--supernet")
    _, info = loaded_supernet(folder)
    archs = list(dict.fromkeys(n["arch"] for n in json.loads(args.source.read_text())["networks"] if n["arch"]))
    data = splits()
    settings = {"supernet": "default", "supernet_epochs": info["recipe"]["epochs"], "lr": info["recipe"]["lr"],
                "epochs": args.epochs, "test_images": len(data.test), "source": args.source.name}  # fmt: skip
    previous = json.loads(RESULT.read_text()) if RESULT.exists() else {}
    rows: list[dict[str, Any]] = previous.get("rows", []) if previous.get("settings") == settings else []
    jobs = [(arch, scale) for arch in archs for scale in args.scales]
    for number, (arch, scale) in enumerate(jobs, 1):
        if any((r["arch"], r["scale"]) == (arch, scale) for r in rows):
            continue
        rows.append(finetune(arch, scale, data, folder, args.epochs))
        atomic_write_json(RESULT, {"settings": settings, "rows": rows, "summary": summarize(rows, args.scales)})
        done = rows[-1]
        print(f"[{number}/{len(jobs)}] x{scale:g}: {done['test_accuracy']:.4f} ({done['seconds']:.0f} s) {arch}", flush=True)
    print(json.dumps(summarize(rows, args.scales), indent=1))


if __name__ == "__main__":
    main()
