"""Does inherited accuracy rank networks better with more images for BatchNorm re-estimation?

Inherited accuracy re-estimates each subnetwork's BatchNorm statistics on the first 512 training images
(``hwnas.trainer.BATCHNORM_IMAGES``) before it is scored. Those statistics are an estimate: if their noise moves a
network's inherited accuracy by as much as the networks differ, more images would rank better, at a price in search
time (re-estimation is about half of a candidate's second). This measures, on the rank-fidelity networks that are
complete in ``benchmarks/results/supernet_fidelity.json``:

- inherited test accuracy (10,000 Fashion-MNIST test images) with statistics from the first 512, 2,048 and 8,192
  embedded training images, and from 512 images at three other offsets (how much the sample alone moves it);
- Kendall tau of each against the networks' stand-alone accuracy (mean of the seeds there), and of one 512-image
  sample against another (how well inherited accuracy ranks itself).

Writes ``benchmarks/results/inherited_batchnorm.json``.

    .venv/bin/python benchmarks/inherited_batchnorm.py --threads 1
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FIDELITY = ROOT / "benchmarks" / "results" / "supernet_fidelity.json"
RESULT = ROOT / "benchmarks" / "results" / "inherited_batchnorm.json"
# (first image, count): the default sample, larger ones, and the default's size taken elsewhere in the training set
SAMPLES = [(0, 512), (0, 2048), (0, 8192), (2048, 512), (4096, 512), (6144, 512)]


def standalone_means() -> dict[str, float]:
    """Each complete network's mean stand-alone test accuracy over the fidelity benchmark's seeds."""
    rows = json.loads(FIDELITY.read_text())["rows"]
    seeds = sorted({r["seed"] for r in rows if r["kind"] == "standalone"})
    table: dict[str, dict[int, float]] = {}
    for row in rows:
        if row["kind"] == "standalone":
            table.setdefault(row["arch"], {})[row["seed"]] = row["test_accuracy"]
    return {arch: float(np.mean([by_seed[s] for s in seeds])) for arch, by_seed in table.items() if set(by_seed) >= set(seeds)}


def inherited(supernet: Any, arch_text: str, data: Any, start: int, count: int) -> float:
    """Test accuracy of ``arch_text``'s inherited weights, BatchNorm re-estimated on training images start..start+count."""
    import torch

    from hwnas.builder import recalibrate_batchnorm
    from hwnas.trainer import Prepared, evaluate

    space = supernet.space
    arch = space.parse(arch_text)
    model = supernet.extract(arch)
    prepared = Prepared(data.train, arch.resolution, space.in_channels)
    images = torch.stack([prepared[i][0] for i in range(start, min(start + count, len(prepared)))])
    recalibrate_batchnorm(model, images)
    with torch.inference_mode():
        return evaluate(model, Prepared(data.test, arch.resolution, space.in_channels))


def tau(values: list[float], reference: list[float]) -> float:
    from scipy.stats import kendalltau

    return float(kendalltau(values, reference).statistic)


def summarize(rows: dict[str, dict[str, float]], reference: dict[str, float]) -> dict[str, Any]:
    archs = [a for a in reference if a in rows and len(rows[a]) == len(SAMPLES)]
    if len(archs) < 3:
        return {"networks": len(archs)}
    truth = [reference[a] for a in archs]
    per_sample = {key: tau([rows[a][key] for a in archs], truth) for key in (f"{s}+{n}" for s, n in SAMPLES)}
    same_size = [f"{s}+{n}" for s, n in SAMPLES if n == 512]
    spread = [float(np.ptp([rows[a][k] for k in same_size])) for a in archs]
    pairs = [(x, y) for i, x in enumerate(same_size) for y in same_size[i + 1 :]]
    return {
        "networks": len(archs),
        "tau_vs_standalone": per_sample,
        "tau_512_sample_vs_sample_mean": float(np.mean([tau(*([rows[a][k] for a in archs] for k in pair)) for pair in pairs])),
        "range_over_512_samples_points": {"median": 100 * float(np.median(spread)), "max": 100 * float(np.max(spread))},
        "tau_mean_of_512_samples_vs_standalone": tau([float(np.mean([rows[a][k] for k in same_size])) for a in archs], truth),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    import torch
    from supernet_fidelity import splits  # the benchmark's own folder is on the path when it is run by path

    from hwnas.supernet.store import load_supernet
    from hwnas.supernets import DEFAULT_SUPERNET

    if args.threads:
        torch.set_num_threads(args.threads)
    supernet, info = load_supernet(DEFAULT_SUPERNET)
    data = splits()
    reference = standalone_means()
    rows: dict[str, dict[str, float]] = json.loads(RESULT.read_text())["rows"] if RESULT.exists() else {}
    for arch_text in reference:
        for start, count in SAMPLES:
            key = f"{start}+{count}"
            if key in rows.get(arch_text, {}):
                continue
            began = time.perf_counter()
            rows.setdefault(arch_text, {})[key] = inherited(supernet, arch_text, data, start, count)
            print(f"{key:>9}: {rows[arch_text][key]:.4f} ({time.perf_counter() - began:.0f} s) {arch_text}", flush=True)
            settings = {"supernet_epochs": info["epochs"], "samples": SAMPLES, "test_images": len(data.test)}
            document = {"settings": settings, "rows": rows, "summary": summarize(rows, reference)}
            RESULT.write_text(json.dumps(document, indent=1) + "\n")
    print(json.dumps(summarize(rows, reference), indent=1))


if __name__ == "__main__":
    main()
