"""Compound scaling against single-dimension scaling at equal measured latency (issue 24's first table).

A base network of the default space is grown to about 2x, 4x and 8x its measured latency on one device with
``hwnas scale`` (ratios from a grid of compound steps that each double the latency on the device), and, at the same
budgets, by width only, depth only and resolution only. Every network is trained the same way (the base's recipe,
``--epochs``, the first ``--train-images`` of full Fashion-MNIST's training split) and tested on its full
10,000-image test split; every file is timed on the device in the same interleaved rounds.

Writes ``benchmarks/results/scale_family_<device>.json``: the ratios and each grid point's predicted and measured
latency doubling, and per budget each way of scaling with measured latency and test accuracy with a 95% interval.
A rerun with the same settings resumes (``hwnas scale`` keeps every trained network).

    .venv/bin/python benchmarks/scale_family.py --device host-tflite [--epochs 3] [--grid 3]
    .venv/bin/python benchmarks/scale_family.py --device host-ort --steps 2 --no-compare   # the ratios on ORT
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BASE = "default:r32_c16[k3e3]_c32[k5e3,k3e3]_c48[k3e6sh,k5e3h]_c80[k3e6h]"
STEPS = (2.0, 4.0, 8.0)
Z95 = 1.96


def measured_base_ms(base: str, device: str) -> float:
    """The base's latency on the device today (``hwnas latency --measure``: timed with the drift networks)."""
    command = [sys.executable, "-m", "hwnas", "latency", base, "--device", device, "--measure", "--json"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True, timeout=900)
    return float(json.loads(done.stdout)["measured"]["median_ms"])


def budgets(out: Path, base: str, device: str, steps: list[float]) -> list[float]:
    """``steps`` x the base's latency measured at the first run (kept, so a resumed run asks for the same budgets; a
    run with other steps keeps every network it can)."""
    kept = out / "budgets.json"
    if kept.exists():
        base_ms = json.loads(kept.read_text())["base_ms"]
    else:
        base_ms = measured_base_ms(base, device)
        out.mkdir(parents=True, exist_ok=True)
        kept.write_text(json.dumps({"base_ms": base_ms}))
    return [round(base_ms * step, 3) for step in steps]


def interval(accuracy: float | None, images: int) -> list[float] | None:
    """Wilson's 95% interval of an accuracy over ``images`` test images."""
    if accuracy is None:
        return None
    centre = (accuracy + Z95**2 / (2 * images)) / (1 + Z95**2 / images)
    half = Z95 * math.sqrt(accuracy * (1 - accuracy) / images + Z95**2 / (4 * images**2)) / (1 + Z95**2 / images)
    return [round(centre - half, 4), round(centre + half, 4)]


def summarise(report: Any, test_images: int) -> dict[str, Any]:
    from hwnas.family.plot import rows

    base_tag = next(p.scaling for p in report.grid if p.role == "base")
    base_ms = report.measured[base_tag].median_ms
    grid = [
        {
            "scaling": row.scaling,
            "chosen": row.scaling == report.ratios,
            "predicted_doubling": round(row.predicted_today_ms / report.calibration.base_measured_ms, 3),
            "measured_doubling": round(row.measured_ms / base_ms, 3) if row.measured_ms else None,
            "val_accuracy": row.val_accuracy,
            "test_accuracy": row.test_accuracy,
        }
        for row in rows(report, report.grid)
    ]
    members = [
        {
            "budget_ms": row.budget_ms,
            "role": row.role,
            "scaling": row.scaling,
            "arch": row.arch,
            "measured_ms": row.measured_ms,
            "within_budget": row.within_budget,
            "test_accuracy": row.test_accuracy,
            "test_interval_95": interval(row.test_accuracy, test_images),
            "val_accuracy": row.val_accuracy,
            "flops": report.trained[row.scaling].flops,
        }
        for row in rows(report, report.members)
    ]
    return {"base_measured_ms": base_ms, "grid": grid, "members": members, "per_budget": per_budget(members, test_images)}


def per_budget(members: list[dict[str, Any]], test_images: int) -> list[dict[str, Any]]:
    """Compound against the best single dimension at each budget, with the difference's 95% interval (independent
    binomial errors of the two accuracies on the same test images: a conservative interval for a paired comparison)."""
    found = []
    for budget in sorted({m["budget_ms"] for m in members}):
        at = {m["role"]: m for m in members if m["budget_ms"] == budget}
        compound, singles = at.get("compound"), [m for role, m in at.items() if role != "compound"]
        if compound is None or not singles or compound["test_accuracy"] is None:
            continue
        best = max(singles, key=lambda m: m["test_accuracy"] or 0)
        a, b = compound["test_accuracy"], best["test_accuracy"]
        half = Z95 * math.sqrt((a * (1 - a) + b * (1 - b)) / test_images)
        found.append({
            "budget_ms": budget,
            "compound": a,
            "best_single": best["role"],
            "best_single_accuracy": b,
            "difference_points": round(100 * (a - b), 2),
            "difference_interval_95_points": [round(100 * (a - b - half), 2), round(100 * (a - b + half), 2)],
        })  # fmt: skip
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="host-tflite")
    parser.add_argument("--base", default=BASE)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--grid", type=int, default=3)
    parser.add_argument("--steps", default=",".join(map(str, STEPS)), help="budgets as multiples of the base's latency")
    parser.add_argument("--train-images", type=int, default=9000)
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-scale")
    parser.add_argument(
        "--no-compare", action="store_true", help="compound members only: the ratios and their doubling on this device"
    )
    args = parser.parse_args()
    out = args.out / args.device
    chosen = budgets(out, args.base, args.device, [float(step) for step in args.steps.split(",")])
    command = [
        sys.executable, "-m", "hwnas", "scale", args.base, "--device", args.device, "--budgets-ms", ",".join(map(str, chosen)),
        "--data", args.data, "--train-images", str(args.train_images), "--epochs", str(args.epochs), "--grid", str(args.grid),
        "--out", str(out / "family"), *(["--no-compare"] if args.no_compare else []),
    ]  # fmt: skip
    print(" ".join(command), flush=True)
    subprocess.run(command, cwd=ROOT, check=True, timeout=12 * 3600)
    from hwnas.data import load_data
    from hwnas.family.records import read_report

    report = read_report(out / "family" / "family.json")
    test_images = len(load_data(args.data).test)
    result = {
        "device": args.device,
        "base": args.base,
        "data": args.data,
        "train_images": args.train_images,
        "test_images": test_images,
        "epochs": args.epochs,
        "grid_size": args.grid,
        "budgets_ms": chosen,
        "ratios": report.ratios,
        "command": " ".join(command[1:]),
    } | summarise(report, test_images)
    path = ROOT / "benchmarks" / "results" / f"scale_family_{args.device}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["per_budget"], indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
