"""How to fine-tune on the shipped supernet: one epoch from inherited weights at several fractions of the supernet's
learning rate, with or without the supernet's largest subnetwork as teacher, for the networks
``benchmarks/specialize_cost.py`` specialized.

``hwnas specialize`` fine-tunes at :data:`hwnas.search.result.FINETUNE_LR_SCALE` of the supernet's rate, a value
chosen on the 3-epoch supernet, whose weights were far from converged; this re-measures it on the supernet shipped
now, and tries the supernet's own teacher (in-place distillation, as it was trained). A variant is ``SCALE`` or
``SCALE:DISTILL`` (``0.3:0.5``: a third of the rate, half the loss from the teacher's soft outputs). Test accuracy on
the full 10,000-image Fashion-MNIST test set, one seed (the seed ``specialize`` uses), each network under every
variant, so the comparison is paired. Rows are written as they finish; rerunning resumes.

Writes ``benchmarks/results/finetune_rate.json``.

    .venv/bin/python benchmarks/finetune_rate.py --variants 1 0.3 0.1 1:0.5 0.3:0.5 --threads 1
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


Variant = tuple[float, float]  # (fraction of the supernet's learning rate, weight of the teacher's soft outputs)


def parse_variant(text: str) -> Variant:
    scale, _, distill = text.partition(":")
    return float(scale), float(distill or 0.0)


def label(variant: Variant) -> str:
    scale, distill = variant
    return f"x{scale:g}" + (f"+kd{distill:g}" if distill else "")


def variant_of(row: dict[str, Any]) -> Variant:
    return row["scale"], row.get("distill", 0.0)


def finetune(arch_text: str, variant: Variant, data: Any, folder: Path, epochs: int) -> dict[str, Any]:
    """One network fine-tuned as ``hwnas specialize`` does it, at ``variant``'s rate and teacher weight."""
    from hwnas.recipe import Recipe
    from hwnas.search.inherited import loaded_supernet
    from hwnas.search.result import from_supernet

    supernet, info = loaded_supernet(folder)
    started = time.perf_counter()
    scale, distill = variant
    arch, recipe = supernet.space.parse(arch_text), Recipe.from_json(info["recipe"])
    result, _ = from_supernet(folder, arch, recipe, data, epochs, 0, scale, distill)
    row = {"arch": arch_text, "scale": scale, "test_accuracy": result.test_accuracy, "seconds": time.perf_counter() - started}
    return row | ({"distill": distill} if distill else {})


def summarize(rows: list[dict[str, Any]], variants: list[Variant]) -> dict[str, Any]:
    """Per variant: mean test accuracy over the networks done under every variant, and its paired difference to the
    first variant in points, network by network."""
    by_arch: dict[str, dict[Variant, float]] = {}
    for row in rows:
        by_arch.setdefault(row["arch"], {})[variant_of(row)] = row["test_accuracy"]
    complete = [accuracies for accuracies in by_arch.values() if set(variants) <= set(accuracies)]
    if not complete:
        return {"networks": 0}
    base = variants[0]
    return {
        "networks": len(complete),
        "mean_test_accuracy": {label(v): statistics.mean(a[v] for a in complete) for v in variants},
        f"minus_{label(base)}_points": {label(v): [round((a[v] - a[base]) * 100, 2) for a in complete] for v in variants[1:]},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--variants", type=parse_variant, nargs="+", default=[(1.0, 0.0), (0.3, 0.0), (0.1, 0.0)],
        help="SCALE (a fraction of the supernet's rate) or SCALE:DISTILL (and the teacher's weight in the loss)",
    )  # fmt: skip
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
    jobs = [(arch, variant) for arch in archs for variant in args.variants]
    for number, (arch, variant) in enumerate(jobs, 1):
        if any((r["arch"], variant_of(r)) == (arch, variant) for r in rows):
            continue
        rows.append(finetune(arch, variant, data, folder, args.epochs))
        atomic_write_json(RESULT, {"settings": settings, "rows": rows, "summary": summarize(rows, args.variants)})
        done = rows[-1]
        shown = f"{label(variant)}: {done['test_accuracy']:.4f} ({done['seconds']:.0f} s) {arch}"
        print(f"[{number}/{len(jobs)}] {shown}", flush=True)
    print(json.dumps(summarize(rows, args.variants), indent=1))


if __name__ == "__main__":
    main()
