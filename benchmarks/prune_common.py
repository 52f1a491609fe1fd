"""What the pruning benchmarks share: the two base networks, trained here once and kept in runs/bench-prune/."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from hwnas.data import ImageSplits
from hwnas.export_model import build_base, resolve_model
from hwnas.pruning.amc import accuracy
from hwnas.pruning.base import BaseModel, save_pruned
from hwnas.pruning.job import stack
from hwnas.recipe import Recipe
from hwnas.trainer import fit_model

DEFAULT_ARCH = "default:r32_c24[k3e3,k5e3]_c40[k5e6,k5e3,k5e6]_c48[k7e3h,k3e6h]_c80[k3e3sh,k7e3sh]"  # space sample, seed 0
BASES = {
    "default": ({"arch": DEFAULT_ARCH}, 1, 32),
    "mobilenet_v2": ({"torchvision": "mobilenet_v2", "num_classes": 10}, 3, 64),
}
CACHE = Path("runs") / "bench-prune"
RESULTS = Path(__file__).parent / "results"


def trained_base(name: str, data: ImageSplits, epochs: int, seed: int = 0) -> tuple[BaseModel, dict]:
    """The base network trained ``epochs`` epochs (cosine, SGD) on ``data``; reused from the cache when there (kept per
    dataset: a base trained on other images is another base)."""
    spec, channels, resolution = BASES[name]
    suffix = "" if data.name == "fashion-mnist-embedded" else f"-{data.name.replace('[:', '-').rstrip(']')}"
    folder = CACHE / f"{name}-{epochs}ep{suffix}"
    if (folder / "pruned.json").exists():
        module = resolve_model(str(folder)).module
        info = {"epochs": epochs, "cached": str(folder)}
    else:
        torch.manual_seed(seed)
        module = build_base(spec)
        started = time.perf_counter()
        curve = fit_model(module, data, Recipe(epochs=epochs), resolution, channels, seed=seed, progress=True)
        module = curve.model.eval()
        info = {"epochs": epochs, "curve": curve.points, "train_seconds": time.perf_counter() - started}
    base = BaseModel(module, spec, channels, resolution, name, f"{name} trained {epochs} epochs here")
    test_images, test_labels = stack(data.test, len(data.test), resolution, channels)  # type: ignore[arg-type]
    info["test_accuracy"] = accuracy(module, test_images, test_labels)
    if not (folder / "pruned.json").exists():
        save_pruned(folder, module, base, [], {"method": "unpruned", "test_accuracy": info["test_accuracy"]})
    return base, info
