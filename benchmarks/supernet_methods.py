"""Sandwich rule or progressive shrinking: which supernet training hands its subnetworks better weights?

Each method trains a supernet of the default space on the embedded images with the same recipe, epochs and seed
(``hwnas supernet train --method sandwich|progressive``, resumable in ``runs/bench-supernet-methods/``; a finished
supernet can be given instead with ``--sandwich DIR`` / ``--progressive DIR``, e.g. the shipped one, which is the
sandwich rule's 3 epochs). Then the same ``--archs`` architectures, spread over the space's latency range on host
TFLite (:func:`supernet_fidelity.spread_archs`, the rank-fidelity benchmark's picks, so its stand-alone accuracies
apply), are scored with the weights they inherit from each (BatchNorm re-estimated on 256 training images, as a
search scores them) on the full 10,000-image Fashion-MNIST test set.

Reported per method: the mean, lowest and highest inherited accuracy, the largest and smallest subnetworks', the
training's wall time and per-epoch curve; between the methods, the paired difference per architecture with a
95% interval (t over architectures); and, where ``benchmarks/results/supernet_fidelity.json`` holds stand-alone
accuracies for the same architectures, each method's Kendall tau against them. Rows are written as they finish.

Another supernet of the space can be scored beside them (``--extra LABEL=DIR``: the 12-epoch sandwich supernet,
progressive shrinking with its channel sorting); a method whose rows are all in the file is not trained again.

Writes ``benchmarks/results/supernet_methods.json``.

    nice .venv/bin/python benchmarks/supernet_methods.py --epochs 3 --archs 30 --sandwich hwnas/supernets/default
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from supernet_fidelity import RESULT as FIDELITY
from supernet_fidelity import splits, spread_archs

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "benchmarks" / "results" / "supernet_methods.json"
RUNS = ROOT / "runs" / "bench-supernet-methods"
METHODS = ("sandwich", "progressive")
BN_IMAGES = 256


def trained_supernet(method: str, epochs: int, given: Path | None, threads: int | None) -> Path:
    """The folder of ``method``'s supernet: ``given``, or trained (resumed) by the README's command in this process."""
    if given is not None:
        return given
    from hwnas.cli import main as hwnas_main

    out = RUNS / f"{method}-e{epochs}"
    command = ["supernet", "train", "--space", "default", "--data", "embedded", "--epochs", str(epochs), "--seed", "0"]
    sys.argv = ["hwnas", *command, "--method", method, "--out", str(out), *(["--threads", str(threads)] if threads else [])]
    try:
        hwnas_main()
    except SystemExit as stop:
        if stop.code not in (0, None):
            raise
    return out


def test_images(data: Any, resolution: int, channels: int) -> Any:
    """The test split prepared as a search prepares its validation images, BatchNorm images as a search takes them."""
    from hwnas.search.inherited import prepare_images

    return prepare_images(data.head(BN_IMAGES, len(data.val)), data.test, resolution, channels)


def standalone_accuracies() -> dict[str, float]:
    """Mean stand-alone test accuracy per architecture from the rank-fidelity benchmark (every seed it has)."""
    if not FIDELITY.exists():
        return {}
    found: dict[str, list[float]] = {}
    for row in json.loads(FIDELITY.read_text())["rows"]:
        if row["kind"] == "standalone":
            found.setdefault(row["arch"], []).append(row["test_accuracy"])
    return {arch: statistics.mean(values) for arch, values in found.items() if len(values) >= 2}


def summarize(rows: list[dict[str, Any]], supernets: dict[str, dict[str, Any]]) -> dict[str, Any]:
    from scipy.stats import kendalltau, t

    table: dict[str, dict[str, float]] = {}
    for row in rows:
        table.setdefault(row["method"], {})[row["arch"]] = row["test_accuracy"]
    summary: dict[str, Any] = {}
    standalone = standalone_accuracies()
    for method, scores in table.items():
        spread = [v for a, v in scores.items() if a not in ("largest", "smallest")]
        entry: dict[str, Any] = {
            "archs": len(spread),
            "mean": statistics.mean(spread) if spread else None,
            "min": min(spread, default=None),
            "max": max(spread, default=None),
            "largest": scores.get("largest"),
            "smallest": scores.get("smallest"),
            "training": supernets.get(method, {}),
        }
        common = [a for a in scores if a in standalone]
        if len(common) >= 3:
            tau = kendalltau([scores[a] for a in common], [standalone[a] for a in common]).statistic
            entry["kendall_tau_vs_standalone"] = {"tau": float(tau), "networks": len(common)}
        summary[method] = entry
    for label in (label for label in table if label != "sandwich" and "sandwich" in table):
        paired = [table[label][a] - table["sandwich"][a] for a in table["sandwich"] if a in table[label]]
        if len(paired) >= 2:
            mean, sem = statistics.mean(paired), statistics.stdev(paired) / len(paired) ** 0.5
            half = float(t.ppf(0.975, len(paired) - 1)) * sem
            summary[f"{label}_minus_sandwich_points"] = {
                "mean": mean * 100, "ci95": [(mean - half) * 100, (mean + half) * 100], "archs": len(paired),
                "ahead": sum(d > 0 for d in paired),
            }  # fmt: skip
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--archs", type=int, default=30)
    parser.add_argument("--sandwich", type=Path, default=None, help="a trained sandwich-rule supernet (else trained)")
    parser.add_argument("--progressive", type=Path, default=None, help="a trained progressive supernet (else trained)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--extra", action="append", default=[], metavar="LABEL=DIR",
        help="another trained supernet of the space to score beside them (e.g. sandwich-e12=DIR, longer training)",
    )  # fmt: skip
    args = parser.parse_args()
    import torch

    from hwnas.fileio import atomic_write_json
    from hwnas.search.inherited import subnet_accuracy
    from hwnas.supernet.store import load_supernet
    from hwnas.supernet.train import METHOD_NAME, PROGRESSIVE_NAME

    archs = [a for a, _ in spread_archs(args.archs)]
    previous = json.loads(RESULT.read_text()) if RESULT.exists() else {}
    rows = previous.get("rows", [])
    done = {(row["method"], row["arch"]) for row in rows}
    # a method whose every row is in the file is neither trained nor loaded again: its training record is kept
    complete = {m for m in METHODS if all((m, name) in done for name in [*archs, "largest", "smallest"])}
    folders = {m: trained_supernet(m, args.epochs, getattr(args, m), args.threads) for m in METHODS if m not in complete}
    extras = dict(item.split("=", 1) for item in args.extra)
    folders |= {label: Path(folder) for label, folder in extras.items()}
    if args.threads:
        torch.set_num_threads(args.threads)
    data = splits()
    earlier = previous.get("settings", {})
    settings = earlier | {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if v is not None}
    settings |= {"extra": sorted({*earlier.get("extra", []), *args.extra}), "test_images": len(data.test)}
    names = {"sandwich": METHOD_NAME, "progressive": PROGRESSIVE_NAME}
    recorded = {label: entry["training"] for label, entry in previous.get("summary", {}).items() if "training" in entry}
    supernets = {label: training for label, training in recorded.items() if label not in folders}  # loaded: anew below
    for method, folder in folders.items():
        supernet, info = load_supernet(folder)
        if method in names and (info["epochs"] != args.epochs or info["method"]["name"] != names[method]):
            found = f"a {info['method']['name']} supernet of {info['epochs']} epochs"
            raise SystemExit(f"{folder}: {found}, not {method} x {args.epochs}")
        supernets[method] = {"folder": str(folder), "method": info["method"]["name"], "epochs": info["epochs"],
                             "wall_time_s": info["wall_time_s"], "curve": info["curve"]}  # fmt: skip
        images: dict[int, Any] = {}
        named = {"largest": supernet.largest_arch(), "smallest": supernet.smallest_arch()}
        for name in [*archs, *named]:
            if (method, name) in done:
                continue
            started = time.perf_counter()
            arch = named.get(name) or supernet.space.parse(name)
            if arch.resolution not in images:
                images[arch.resolution] = test_images(data, arch.resolution, supernet.space.in_channels)
            accuracy, _ = subnet_accuracy(supernet, arch, images[arch.resolution])
            rows.append({"method": method, "arch": name, "test_accuracy": accuracy, "seconds": time.perf_counter() - started})
            atomic_write_json(RESULT, {"settings": settings, "archs": archs, "rows": rows})
            print(f"{method} {accuracy:.4f} {name}", flush=True)
    summary = summarize(rows, supernets)
    atomic_write_json(RESULT, {"settings": settings, "archs": archs, "rows": rows, "summary": summary})
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
