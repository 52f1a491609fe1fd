"""Score search candidates by the accuracy they inherit from a trained supernet, instead of training each one.

``hwnas search --supernet DIR``: a candidate's accuracy is that of its subnetwork extracted from the
supernet (:meth:`~hwnas.supernet.Supernet.extract`), BatchNorm statistics re-estimated on a few
hundred training images, evaluated on a fixed subset of validation images. That is
:func:`hwnas.supernet.store.inherited_accuracy`, with its inputs prepared once and the network run
in its fastest inference form (see :func:`subnet_accuracy`): a trained candidate costs a proxy
epoch (tens of seconds), an inherited one about a second, so a search can afford hundreds of
candidates where it trained two dozen.

The candidate's recipe plays no part in its accuracy: inherited weights were trained by the
supernet's own recipe, once, for every subnetwork. A strategy that also searches recipes still
proposes them (the loop stores the pair, and the final retraining of the best uses its recipe), but
two candidates of one architecture score the same here (the second is not evaluated again).

Candidates are scored in a pool of worker processes (:class:`InheritedPoolExecutor`, one thread
each, as training is) or in this process (:class:`InheritedExecutor`). Per process the supernet is
loaded once, and the BatchNorm images and validation images are prepared once per resolution:
only extraction, re-estimation and the forward passes are paid per candidate. The subset sizes
travel in the job as ``train_images`` (BatchNorm images, at most :data:`MAX_BN_IMAGES`) and
``val_images``, as the proxy's do, so they are part of the search's identity.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import Future
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from hwnas.arch import Arch
from hwnas.builder import count_params, recalibrate_batchnorm
from hwnas.data import ImageSplits
from hwnas.errors import UserError
from hwnas.search.executors import Executor, Job, LocalExecutor, Result, Task
from hwnas.search.worker import proxy_data, set_threads
from hwnas.space import SearchSpace
from hwnas.supernet.network import Supernet
from hwnas.supernet.store import WEIGHTS_FILE, load_supernet
from hwnas.trainer import BATCHNORM_IMAGES, EVAL_BATCH, Prepared, batchnorm_images

MAX_BN_IMAGES = BATCHNORM_IMAGES  # what hwnas.trainer.batchnorm_images takes at most (the defaults: hwnas.search.api)


# ---- what is loaded and prepared once per process -------------------------------------------------
def loaded_supernet(folder: Path | str) -> tuple[Supernet, dict[str, Any]]:
    """The supernet of ``folder`` and its description, loaded once per process (again only when its weights change)."""
    folder = Path(folder).resolve()
    try:
        stat = (folder / WEIGHTS_FILE).stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
    except OSError:
        stamp = (0, 0)  # load_supernet says what is missing, in one line
    return _load(str(folder), stamp)


@lru_cache(maxsize=2)
def _load(folder: str, stamp: tuple[int, int]) -> tuple[Supernet, dict[str, Any]]:
    return load_supernet(Path(folder))


def recorded_data(info: dict[str, Any]) -> str | None:
    """The data source a supernet was trained on (``supernet.json``), as ``--data`` takes it (None: the embedded images)."""
    data = info.get("data")
    source = data.get("source") if isinstance(data, dict) else None
    return None if source in (None, "embedded") or not isinstance(source, str) else source


def evaluation_data(source: str | None, bn_images: int | None, val_images: int | None) -> ImageSplits:
    """The images candidates are scored with: the first ``bn_images`` training and ``val_images`` validation images."""
    return proxy_data(source, bn_images, val_images)


@dataclass(frozen=True)
class EvaluationImages:
    """One resolution's images, prepared (resized, channels matched, normalised) and laid out channels-last.

    ``batchnorm``: the images BatchNorm statistics are re-estimated from (None: the model has no BatchNorm);
    ``batches``: the validation images and labels in :data:`~hwnas.trainer.EVAL_BATCH` batches, as ``evaluate`` takes them.
    """

    batchnorm: torch.Tensor | None
    batches: tuple[tuple[torch.Tensor, torch.Tensor], ...]

    @property
    def val_images(self) -> int:
        return sum(len(labels) for _, labels in self.batches)


@lru_cache(maxsize=8)
def evaluation_images(
    source: str | None, bn_images: int | None, val_images: int | None, resolution: int, channels: int
) -> EvaluationImages:
    """The images of :func:`evaluation_data` at one resolution, prepared once per process (the same pixels as ``Prepared``)."""
    data = evaluation_data(source, bn_images, val_images)
    return prepare_images(data, data.val, resolution, channels)


def prepare_images(data: ImageSplits, scored: Any, resolution: int, channels: int) -> EvaluationImages:
    """``scored`` (a split of ``data``: validation for a search, test for a benchmark) laid out for
    :func:`subnet_accuracy`, with BatchNorm images from ``data``'s training split."""
    prepared = Prepared(scored, resolution, channels)
    pairs = [prepared[index] for index in range(len(prepared))]
    images = torch.stack([image for image, _ in pairs]).contiguous(memory_format=torch.channels_last)
    labels = torch.tensor([label for _, label in pairs])
    batches = tuple((images[at : at + EVAL_BATCH], labels[at : at + EVAL_BATCH]) for at in range(0, len(labels), EVAL_BATCH))
    probe = nn.BatchNorm2d(1)  # batchnorm_images only asks whether the model has BatchNorm: every extracted net has
    batchnorm = batchnorm_images(data, resolution, channels, probe)
    return EvaluationImages(None if batchnorm is None else batchnorm.contiguous(memory_format=torch.channels_last), batches)


# ---- one candidate ----------------------------------------------------------------------------------
def subnet_accuracy(supernet: Supernet, arch: Arch, images: EvaluationImages) -> tuple[float, int]:
    """(validation accuracy, parameters) of ``arch`` with inherited weights: what ``inherited_accuracy`` computes, faster.

    The same network, BatchNorm images and validation images as :func:`hwnas.supernet.store.inherited_accuracy`;
    it is evaluated channels-last with each BatchNorm folded into the convolution before it (after re-estimation),
    which on CPU takes a third of the time (measured on the default space, 1000 images, one thread: smallest,
    median and largest network 0.35, 0.67 and 1.7 s, against 1.5, 2.1 and 5.8 s). The sums then run in another
    order, so a prediction whose two best logits tie to about 1e-6 can come out the other way: no such flip was
    seen in 33 architectures x 1000 images, and the test allows one image per architecture.

    Extracting builds (and initialises) a network before the supernet's weights replace its own: the caller's
    random stream is left as it was, so a search scored this way draws the same candidates as one that trains.
    """
    with torch.random.fork_rng(devices=[]):
        model = supernet.extract(arch)
    params = count_params(model)
    model = model.to(memory_format=torch.channels_last)
    if images.batchnorm is not None:
        recalibrate_batchnorm(model, images.batchnorm)
    model = fold_batchnorm(model.eval()).to(memory_format=torch.channels_last)  # folded weights are laid out anew
    correct = 0
    with torch.inference_mode():
        for batch, labels in images.batches:
            correct += int((model(batch).argmax(1) == labels).sum())
    return correct / max(images.val_images, 1), params


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Every BatchNorm that directly follows a convolution in a Sequential (the builder's conv-norm-activation) folded
    into it, in place: one pass over the activations less per layer at inference. ``model`` must be in eval mode."""
    for module in model.modules():
        if not isinstance(module, nn.Sequential):
            continue
        for index in range(len(module) - 1):
            conv, norm = module[index], module[index + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d) and norm.track_running_stats:
                module[index] = fuse_conv_bn_eval(conv, norm)
                module[index + 1] = nn.Identity()
    return model


def evaluate_inherited(job: Job) -> Result:
    """A job's candidate scored by inherited weights (``job['supernet']``: the folder); the same keys as a trained one."""
    started = time.perf_counter()
    try:
        return _score(job) | {"wall_time_s": time.perf_counter() - started, "worker_pid": os.getpid()}
    except Exception as error:  # a candidate that cannot be scored is a failed trial, not a failed search
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return {"state": "failed", "error": f"{type(error).__name__}: {detail}", "wall_time_s": time.perf_counter() - started}


def _score(job: Job) -> Result:
    if job.get("threads"):
        set_threads(int(job["threads"]))
    space = SearchSpace.from_json(job["space"])
    supernet, _ = loaded_supernet(job["supernet"])
    check_space(supernet, space, job["supernet"])
    arch = space.parse(job["arch"])
    data = evaluation_data(job.get("data"), job.get("train_images"), job.get("val_images"))
    if (data.channels, data.num_classes) != (space.in_channels, space.num_classes):
        raise UserError(
            f"data {data.name!r} has {data.channels} channel(s) and {data.num_classes} classes, "
            f"the supernet of {space.name!r} {space.in_channels} and {space.num_classes}"
        )
    subsets = (job.get("data"), job.get("train_images"), job.get("val_images"))
    accuracy, params = _arch_accuracy(supernet, subsets, arch)
    return {
        "state": "complete",
        "accuracy": accuracy,
        "curve": [{"epoch": 0, "val_accuracy": accuracy}],  # no training: one point, the inherited accuracy
        "params": params,
        "threads": torch.get_num_threads(),
        "evaluation": "inherited",
    }


@lru_cache(maxsize=4096)
def _arch_accuracy(supernet: Supernet, subsets: tuple[str | None, int | None, int | None], arch: Arch) -> tuple[float, int]:
    """:func:`subnet_accuracy`, once per architecture in a process.

    Strategies that search recipes too (the default fbnetv3 among them) ask for one architecture with several
    recipes, and the recipe plays no part here. Keyed by the supernet object itself, so a supernet loaded again
    (its weights changed) scores afresh.
    """
    return subnet_accuracy(supernet, arch, evaluation_images(*subsets, arch.resolution, supernet.space.in_channels))


def check_space(supernet: Supernet, space: SearchSpace, folder: Path | str) -> None:
    """A supernet of another space than the search's: one line naming both (its weights fit no candidate)."""
    own = supernet.space
    if own.hash != space.hash:
        raise UserError(
            f"supernet {folder} is of space {own.name!r} (hash {own.hash}), the search's space {space.name!r} is {space.hash}: "
            f"train one of this space (hwnas supernet train --space ...) or search its space (leave out --space)"
        )


# ---- the executors ---------------------------------------------------------------------------------
class InheritedExecutor(Executor):
    """Scores each job in this process, when submitted, by the accuracy it inherits from the supernet in ``folder``.

    One slot, like :class:`~hwnas.search.executors.InlineExecutor` (tests, debugging, a one-core
    machine); ``threads`` torch threads (default: leave torch's setting alone). The supernet is
    loaded here, once, so a bad folder is one line before the search starts.
    """

    def __init__(self, folder: Path, threads: int | None = None) -> None:
        self.folder = Path(folder)
        loaded_supernet(self.folder)
        self.slots = 1
        self.threads = threads or torch.get_num_threads()
        self._set_threads = threads is not None

    def submit(self, job: Job) -> Future:
        future: Future = Future()
        threads = {"threads": self.threads} if self._set_threads else {}
        future.set_result(evaluate_inherited(job | {"supernet": str(self.folder)} | threads))
        return future

    def wait_any(self, handles: list[Any], timeout: float | None = None) -> list[tuple[Any, Result]]:
        return [(handle, handle.result()) for handle in handles if handle.done()]

    def describe(self) -> dict[str, Any]:
        return super().describe() | {"evaluation": "inherited", "supernet": str(self.folder)}


class InheritedPoolExecutor(LocalExecutor):
    """:class:`~hwnas.search.executors.LocalExecutor`'s pool of worker processes, each scoring jobs by inherited weights.

    Why processes rather than threads: these networks are small, and their convolutions scale poorly across
    threads (measured on 2 busy cores: the largest network of the default space 1.6 s on one thread, 4.0 s on
    two), so every core is a worker with one thread, as for training. Each worker loads the supernet and
    prepares its images on its first job and keeps them; the timeout, a lost worker and ``close`` are the
    pool's. The supernet is loaded here too, first, so a bad folder is one line before a worker starts.
    """

    work = staticmethod(evaluate_inherited)

    def __init__(self, folder: Path, workers: int | None = None, timeout_s: float | None = None) -> None:
        self.folder = Path(folder)
        loaded_supernet(self.folder)
        super().__init__(workers, timeout_s)

    def submit(self, job: Job) -> Task:
        task = Task(job | {"threads": self.threads, "supernet": str(self.folder)})
        self._run(task)
        return task

    def describe(self) -> dict[str, Any]:
        return super().describe() | {"evaluation": "inherited", "supernet": str(self.folder)}
