"""Export sampled architectures of every preset (and four torchvision models) to ONNX and TFLite fp32.

For each preset, ``--count`` architectures are sampled (seeded), built with random weights whose
BatchNorm statistics are re-estimated on real images (so outputs depend on the input), exported
to ONNX and TFLite, and verified in ONNX Runtime / the TFLite interpreter against PyTorch on
``--images`` real images (embedded Fashion-MNIST resized to the preset's resolution). Pass:
max |diff| <= 1e-4. Work runs in ``--workers`` processes. Writes ``benchmarks/results/export_sampled.json``.

    .venv/bin/python benchmarks/export_sampled.py --count 100
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRESETS = ("default", "proxylessnas", "mnasnet", "ofa-mbv3")
TORCHVISION = ("mobilenet_v2", "mobilenet_v3_small", "mnasnet1_0", "efficientnet_b0")


def export_one(model: str, images: int) -> dict:
    """Export one model to ONNX and TFLite and verify both (runs in a worker process)."""
    import os
    import tempfile

    import torch

    os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")
    torch.set_num_threads(1)
    from hwnas.export_model import build_request, resolve_model
    from hwnas.exporters import get_exporter, verify

    request = build_request(resolve_model(model), None, images=images, calibration=64)
    row = {"model": model}
    with tempfile.TemporaryDirectory() as scratch:
        for fmt in ("onnx", "tflite"):
            exporter = get_exporter(fmt)
            started = time.perf_counter()
            try:
                path = exporter.export(request.module, request.example_input, Path(scratch) / f"m{exporter.suffix}")
                seconds = time.perf_counter() - started
                check = verify(exporter, path, request.module, request.images)
                row[fmt] = {
                    "passed": check.passed,
                    "max_abs_diff": check.max_abs_diff,
                    "max_abs_diff_float64": check.max_abs_diff_float64,  # set only when the fp32 comparison missed
                    "seconds": round(seconds, 2),
                    "failure": check.failure,
                }
            except Exception as error:  # a failed conversion is a result to count, not a crash
                row[fmt] = {
                    "passed": False,
                    "error": str(error).splitlines()[0][:300],
                    "seconds": round(time.perf_counter() - started, 2),
                }
    return row


def summarize(rows: list[dict]) -> dict:
    summary = {}
    for fmt in ("onnx", "tflite"):
        results = [row[fmt] for row in rows]
        diffs = [r["max_abs_diff"] for r in results if "max_abs_diff" in r]
        summary[fmt] = {
            "passed": sum(r["passed"] for r in results),
            "total": len(results),
            "median_seconds": statistics.median(r["seconds"] for r in results),
            "max_abs_diff_max": max(diffs) if diffs else None,
            "passed_on_float64": sum(r.get("max_abs_diff_float64") is not None and r["passed"] for r in results),
            "failures": [{"model": row["model"], **row[fmt]} for row in rows if not row[fmt]["passed"]][:10],
        }
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--presets", default=",".join(PRESETS))
    parser.add_argument("--no-torchvision", action="store_true", help="skip the four torchvision models")
    parser.add_argument("--out", default="export_sampled.json", help="file name under benchmarks/results/")
    args = parser.parse_args()
    from hwnas.presets import get_space

    jobs: dict[str, list[str]] = {}
    for preset in args.presets.split(","):
        rng = random.Random(0)
        jobs[preset] = [get_space(preset).sample(rng).format() for _ in range(args.count)]
    if not args.no_torchvision:
        jobs["torchvision"] = [f"torchvision:{name}" for name in TORCHVISION]
    started = time.perf_counter()
    rows: dict[str, list[dict]] = {group: [] for group in jobs}
    with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(export_one, model, args.images): group for group, models in jobs.items() for model in models}
        for done, future in enumerate(as_completed(futures), start=1):
            rows[futures[future]].append(future.result())
            if done % 20 == 0:
                print(f"{done}/{len(futures)} after {time.perf_counter() - started:.0f} s", flush=True)
    results = {
        "command": " ".join(["benchmarks/export_sampled.py", *sys.argv[1:]]),
        "count_per_preset": args.count,
        "verification_images": args.images,
        "tolerance_max_abs_diff": 1e-4,
        "wall_s": round(time.perf_counter() - started, 1),
        "groups": {group: summarize(group_rows) for group, group_rows in rows.items()},
        "rows": rows,
    }
    out = ROOT / "benchmarks" / "results" / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    for group, summary in results["groups"].items():
        print(group, {fmt: f"{s['passed']}/{s['total']} (median {s['median_seconds']} s)" for fmt, s in summary.items()})


if __name__ == "__main__":
    main()
