"""Train one candidate under the proxy, in whatever process the executor chose.

A job and its result are plain JSON-able dicts (no pickled objects cross a process or a Ray
cluster beyond what their transport does with dicts), so the same function runs in a local
worker process, on a Ray node, or inline in a test.

The proxy: ``recipe.epochs`` epochs on the first ``train_images`` training images; its accuracy is the
last epoch's validation accuracy, which :func:`hwnas.trainer.fit_model` takes after re-estimating the
BatchNorm statistics on 512 un-augmented training images (as single-path NAS methods do). Without that,
a network trained for a few dozen steps keeps running statistics that are mostly their initial values,
and scores chance on validation (measured here: 9.8% raw vs 69-76% re-estimated, 2000 images, one epoch
at batch 128). The worker used to re-estimate and evaluate a second time, which gave the same number and
cost a third of a 192-image proxy trial (1.6 of 3.6 s, measured 2026-12-04).
A loss that is not finite marks the trial failed; any other error in training does too, with its
first line kept, and the search goes on.
"""

from __future__ import annotations

import math
import os
import time
from functools import lru_cache
from typing import Any

import torch

from hwnas.builder import build_model, count_params
from hwnas.data import ImageSplits, load_data
from hwnas.recipe import Recipe
from hwnas.space import SearchSpace
from hwnas.trainer import fit_model


@lru_cache(maxsize=4)
def proxy_data(source: str | None, train_images: int | None, val_images: int | None) -> ImageSplits:
    """The proxy's images, loaded once per worker process."""
    data = load_data(source)
    if train_images or val_images:
        data = data.head(train_images or len(data.train), val_images or len(data.val))  # type: ignore[arg-type]
    return data


def set_threads(threads: int) -> None:
    """Torch threads of this worker (the executor splits the cores between workers)."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)


def evaluate_candidate(job: dict[str, Any]) -> dict[str, Any]:
    """Train ``job['arch']`` with ``job['recipe']``; return accuracy, curve, wall time or the failure."""
    started = time.perf_counter()
    try:
        return _train(job) | {"wall_time_s": time.perf_counter() - started, "worker_pid": os.getpid()}
    except Exception as error:  # a candidate that cannot train is a failed trial, not a failed search
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return {"state": "failed", "error": f"{type(error).__name__}: {detail}", "wall_time_s": time.perf_counter() - started}


def _train(job: dict[str, Any]) -> dict[str, Any]:
    if job.get("threads"):
        set_threads(int(job["threads"]))
    space = SearchSpace.from_json(job["space"])
    arch = space.parse(job["arch"])
    recipe = Recipe.from_json(job["recipe"])
    data = proxy_data(job.get("data"), job.get("train_images"), job.get("val_images"))
    seed = int(job.get("seed", 0))
    torch.manual_seed(seed)
    model = build_model(space, arch, dropout=recipe.dropout, drop_path=recipe.drop_path)
    curve = fit_model(model, data, recipe, arch.resolution, space.in_channels, seed=seed, progress=False)
    losses = [point["train_loss"] for point in curve.points]
    if not all(math.isfinite(loss) for loss in losses):
        return {"state": "failed", "error": "training loss became NaN or infinite", "curve": _finite(curve.points)}
    return {
        "state": "complete",
        "accuracy": curve.points[-1]["val_accuracy"],  # BatchNorm re-estimated by fit_model before it evaluated
        "curve": curve.points,
        "params": count_params(model),
        "threads": torch.get_num_threads(),
    }


def _finite(points: list[dict[str, float]]) -> list[dict[str, float | None]]:
    """JSON has no NaN: a non-finite number is stored as null."""
    return [{k: (v if math.isfinite(v) else None) for k, v in point.items()} for point in points]
