"""Train a supernet from scratch: the sandwich rule with in-place distillation (BigNAS, AttentiveNAS).

Why this method: a supernet trained on its largest network alone hands its smaller subnetworks
weights they were never trained with, and they score near chance. The sandwich rule trains both
ends of the space every step (the largest and the smallest subnetwork) plus ``random_subnets``
sampled ones, so every size between learns; in-place distillation trains all but the largest on
the largest's own (detached) soft predictions, which BigNAS found is what lets inherited weights
rank architectures without retraining each one. All their gradients are accumulated, then the
optimizer steps once.

Every subnetwork runs at its own resolution (the largest at the space's highest, the smallest at
its lowest, a sampled one at the one it drew): the batch is loaded at the highest resolution and
resized down. Optimizer, learning-rate schedule, data loading, checkpoints and the progress bar
are :mod:`hwnas.trainer`'s: a checkpoint after every epoch, a rerun resumes after the last one and
ends with the weights of an uninterrupted run, and a checkpoint of other settings is refused in
one line. The subnetworks of an epoch are drawn from a ``random.Random`` seeded with (seed, epoch)
and the batch order from a torch generator seeded the same way, so a resumed epoch draws exactly
what the interrupted one drew.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from hwnas.arch import Arch
from hwnas.data import ImageSplits
from hwnas.errors import UserError
from hwnas.fileio import text_sha256
from hwnas.recipe import Recipe
from hwnas.space import SearchSpace
from hwnas.supernet.network import Supernet
from hwnas.supernet.store import inherited_accuracy
from hwnas.trainer import (
    CHECKPOINT_FILE,
    _progress_bar,
    _train_loader,
    _TrainingState,
    batchnorm_images,
    load_checkpoint,
    make_optimizer,
    save_checkpoint,
    training_fingerprint,
    warmup_cosine,
)

METHOD_NAME = "sandwich-inplace-distillation"
# recipe fields of single-network training the supernet has no use for: refused rather than silently ignored
UNUSED_RECIPE_FIELDS = ("mixup", "dropout", "drop_path", "ema")
MAX_RANDOM_SUBNETS = 16


def training_method(random_subnets: int = 2) -> dict[str, Any]:
    """How the supernet is trained, as written into ``supernet.json`` and the checkpoint's fingerprint."""
    return {
        "name": METHOD_NAME,
        "random_subnets": random_subnets,
        "label_loss": "largest subnetwork: cross-entropy on the labels (recipe label_smoothing)",
        "distillation": "smallest and random subnetworks: KL divergence to the largest's detached soft predictions",
        "resolution": "each subnetwork at its own (largest: highest, smallest: lowest)",
    }


@dataclass
class SupernetTraining:
    """A trained supernet (its largest subnetwork active, in eval mode) and what its training did, epoch by epoch."""

    supernet: Supernet
    curve: list[dict[str, float]]
    method: dict[str, Any]
    threads: int

    @property
    def wall_time_s(self) -> float:
        """Seconds of every epoch, including those of an earlier run this one resumed."""
        return sum(point["seconds"] for point in self.curve)


def check_recipe(recipe: Recipe, random_subnets: int) -> None:
    """Refuse recipe fields supernet training does not apply (rather than ignore them), and a bad subnetwork count."""
    unused = [name for name in UNUSED_RECIPE_FIELDS if getattr(recipe, name)]
    if unused:
        raise UserError(
            f"recipe field {unused[0]!r}={getattr(recipe, unused[0])} is not applied by supernet training "
            f"(it uses optimizer, lr, weight_decay, epochs, batch_size, warmup_epochs, label_smoothing, randaugment): "
            f"set {unused[0]}=0"
        )
    if not 0 <= random_subnets <= MAX_RANDOM_SUBNETS:
        raise UserError(f"random subnetworks per step must be 0 to {MAX_RANDOM_SUBNETS}, not {random_subnets}")


def check_inputs(space: SearchSpace, recipe: Recipe, data: ImageSplits, random_subnets: int) -> None:
    """Refuse, before any work, data the space cannot take and what :func:`check_recipe` refuses."""
    if (data.channels, data.num_classes) != (space.in_channels, space.num_classes):
        raise UserError(
            f"data {data.name!r} has {data.channels} channel(s) and {data.num_classes} classes, "
            f"space {space.name!r} {space.in_channels} and {space.num_classes}"
        )
    check_recipe(recipe, random_subnets)


@dataclass
class _Run:
    """Everything one training run carries from step to step."""

    supernet: Supernet
    recipe: Recipe
    data: ImageSplits
    seed: int
    random_subnets: int
    loader: DataLoader
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LRScheduler
    criterion: nn.Module
    calibration: dict[int, torch.Tensor | None] = field(default_factory=dict)  # BatchNorm images per resolution

    @classmethod
    def start(cls, supernet: Supernet, recipe: Recipe, data: ImageSplits, seed: int, random_subnets: int) -> _Run:
        space = supernet.space
        loader = _train_loader(data, max(space.resolutions), space.in_channels, recipe, seed)
        optimizer = make_optimizer(supernet, recipe)
        steps = recipe.epochs * len(loader)
        warmup = round(recipe.warmup_epochs * len(loader))
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(steps, warmup))
        criterion = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
        return cls(supernet, recipe, data, seed, random_subnets, loader, optimizer, schedule, criterion)

    def state(self) -> _TrainingState:
        return _TrainingState(self.supernet, self.optimizer, self.schedule, None, self.loader.generator)  # type: ignore[arg-type]

    def fingerprint(self) -> dict[str, Any]:
        space = self.supernet.space
        identity = {"kind": "supernet", "space": space.hash, "method": training_method(self.random_subnets)}
        resolution = max(space.resolutions)
        return training_fingerprint(self.supernet, self.data, self.recipe, resolution, space.in_channels, self.seed, identity)


def train_supernet(
    space: SearchSpace,
    recipe: Recipe,
    data: ImageSplits,
    *,
    seed: int = 0,
    random_subnets: int = 2,
    threads: int | None = None,
    checkpoint: Path | None = None,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> SupernetTraining:
    """Train a :class:`Supernet` of ``space`` from scratch on ``data`` (see the module docstring).

    ``checkpoint``: a folder where every finished epoch is kept (``checkpoint.pt``) and resumed
    from. ``log`` gets the "resuming" line and one line per epoch with the largest and smallest
    subnetworks' validation accuracy (inherited weights, BatchNorm re-estimated).
    """
    check_inputs(space, recipe, data, random_subnets)
    threads = threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    run = _Run.start(Supernet(space), recipe, data, seed, random_subnets)
    points = _resume(run, checkpoint, log)
    steps = len(run.loader)
    with _progress_bar(progress) as bar:
        task = bar.add_task("supernet", total=recipe.epochs * steps, completed=len(points) * steps, loss=float("nan"))
        for epoch in range(len(points) + 1, recipe.epochs + 1):
            points.append(_epoch(run, epoch, lambda loss: bar.update(task, advance=1, loss=loss)))
            if checkpoint is not None:
                save_checkpoint(Path(checkpoint) / CHECKPOINT_FILE, run.state(), run.fingerprint(), points)
            if log is not None:
                log(_epoch_line(points[-1], recipe.epochs))
    run.supernet.set_active(run.supernet.largest_arch())
    return SupernetTraining(run.supernet.eval(), points, training_method(random_subnets), threads)


def _resume(run: _Run, checkpoint: Path | None, log: Callable[[str], None] | None) -> list[dict[str, float]]:
    """The curve of the epochs a checkpoint holds (their weights, optimizer and random states restored), or []."""
    if checkpoint is None:
        return []
    path = Path(checkpoint) / CHECKPOINT_FILE
    points = load_checkpoint(path, run.state(), run.fingerprint(), run.recipe.epochs)
    if points and log is not None:
        epochs = run.recipe.epochs
        more = f"from epoch {len(points) + 1} of {epochs}" if len(points) < epochs else "nothing left to train"
        log(f"resuming {path}: {len(points)} epoch(s) done, {more}")
    return points


def _epoch(run: _Run, epoch: int, advance: Callable[[float], None]) -> dict[str, float]:
    """One epoch of sandwich steps, then the largest and smallest subnetworks' validation accuracy."""
    started = time.perf_counter()
    net = run.supernet
    archs = random.Random(f"hwnas-supernet:{run.seed}:{epoch}")
    run.loader.generator.manual_seed(int(text_sha256(f"{run.seed}:{epoch}", 15), 16))  # type: ignore[union-attr]
    ends = [net.largest_arch(), net.smallest_arch()]
    net.train()
    label_sum = distill_sum = 0.0
    seen = 0
    for images, labels in run.loader:
        sampled = [net.sample_arch(archs) for _ in range(run.random_subnets)]
        label_loss, distill_loss = _sandwich_step(run, images, labels, [*ends, *sampled])
        label_sum += label_loss * len(labels)
        distill_sum += distill_loss * len(labels)
        seen += len(labels)
        advance(label_sum / seen)
    largest, smallest = (_validate(run, arch) for arch in ends)
    return {
        "epoch": epoch,
        "train_loss": label_sum / seen,
        "distill_loss": distill_sum / seen,
        "largest_val_accuracy": largest,
        "smallest_val_accuracy": smallest,
        "seconds": time.perf_counter() - started,
    }


def _sandwich_step(run: _Run, images: torch.Tensor, labels: torch.Tensor, archs: list[Arch]) -> tuple[float, float]:
    """Largest on the labels, the others distilled from its soft predictions; one optimizer step for all."""
    net = run.supernet
    run.optimizer.zero_grad(set_to_none=True)
    net.set_active(archs[0])
    teacher = net(_resized(images, archs[0].resolution))
    label_loss = run.criterion(teacher, labels)
    label_loss.backward()
    soft = F.softmax(teacher.detach(), dim=1)
    distill = 0.0
    for arch in archs[1:]:
        net.set_active(arch)
        student = F.log_softmax(net(_resized(images, arch.resolution)), dim=1)
        loss = F.kl_div(student, soft, reduction="batchmean")
        loss.backward()  # gradients accumulate; each subnetwork's graph is freed before the next is built
        distill += loss.item()
    run.optimizer.step()
    run.schedule.step()
    return label_loss.item(), distill / max(len(archs) - 1, 1)


def _resized(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """The batch (loaded at the space's highest resolution) at ``resolution``."""
    if images.shape[-1] == resolution:
        return images
    return F.interpolate(images, size=(resolution, resolution), mode="bilinear", antialias=True, align_corners=False)


def _validate(run: _Run, arch: Arch) -> float:
    """Validation accuracy of ``arch`` with inherited weights; the training's random streams are left as they were."""
    space = run.supernet.space
    if arch.resolution not in run.calibration:
        run.calibration[arch.resolution] = batchnorm_images(run.data, arch.resolution, space.in_channels, run.supernet)
    with torch.random.fork_rng(devices=[]):  # extracting builds a network, whose initialisation draws random numbers
        return inherited_accuracy(run.supernet, arch, run.data, bn_images=run.calibration[arch.resolution])


def _epoch_line(point: dict[str, float], epochs: int) -> str:
    return (
        f"epoch {point['epoch']}/{epochs}: loss {point['train_loss']:.4f} (distillation {point['distill_loss']:.4f}), "
        f"val accuracy largest {point['largest_val_accuracy']:.4f}, smallest {point['smallest_val_accuracy']:.4f} "
        f"({point['seconds']:.1f} s)"
    )
