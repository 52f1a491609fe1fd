"""Train a supernet from scratch: the sandwich rule with in-place distillation (BigNAS, AttentiveNAS), or
Once-for-All's progressive shrinking (``method="progressive"``), so the two can be compared by measurement.

Why this method: a supernet trained on its largest network alone hands its smaller subnetworks
weights they were never trained with, and they score near chance. The sandwich rule trains both
ends of the space every step (the largest and the smallest subnetwork) plus ``random_subnets``
sampled ones, so every size between learns; in-place distillation trains all but the largest on
the largest's own (detached) soft predictions, which BigNAS found is what lets inherited weights
rank architectures without retraining each one. All their gradients are accumulated, then the
optimizer steps once.

Progressive shrinking (OFA) trains the largest network first and lets the choices become elastic one
group at a time, in OFA's order: the steps fall into four equal quarters, (1) the largest subnetwork
alone, (2) also elastic kernel and resolution, (3) also elastic depth, (4) also elastic expansion,
width, SE and activation (every choice). From the second quarter on each step runs the largest on the
labels and ``random_subnets + 1`` subnetworks sampled within the quarter's choices on its soft
predictions: as many passes per step as the sandwich rule's smallest and random ones. OFA distils
from the trained full network, frozen; here the largest keeps training and teaches in place, as in
the sandwich rule, so the two methods differ only in which subnetworks a step trains. The phase of a
step is a function of its index, so a resumed run continues in the phase it was in.

Every subnetwork runs at its own resolution (the largest at the space's highest, the smallest at
its lowest, a sampled one at the one it drew): the batch is loaded at the highest resolution and
resized down. Optimizer, learning-rate schedule, data loading, checkpoints and the progress bar
are :mod:`hwnas.trainer`'s: a checkpoint after every epoch, a rerun resumes after the last one and
ends with the weights of an uninterrupted run, and a checkpoint of other settings is refused in
one line. The subnetworks of an epoch are drawn from a ``random.Random`` seeded with (seed, epoch)
and the batch order from a torch generator seeded the same way, so a resumed epoch draws exactly
what the interrupted one drew.

Devices (``accelerator``, :mod:`hwnas.accelerator`): on a CUDA GPU every subnetwork's forward and
backward pass runs under autocast (bfloat16, or float16 with a gradient scaler), its loss in float32
on its logits cast back, BatchNorm in float32; validation is float32. The supernet comes back on
the CPU and checkpoints hold CPU tensors, so a run started on a GPU resumes on a CPU.

Data-parallel training (``distributed``: :class:`~hwnas.accelerator.Distributed`, one process of a
``torchrun`` launch). Each process trains on its shard of the training images (a
``DistributedSampler`` seeded by the seed, reshuffled per epoch; ``recipe.batch_size`` is the global
batch, split evenly over the processes, so the recipe means the same on any number of them), and
draws the same subnetworks as every other (the per-epoch ``random.Random`` above is seeded alike on
all). Gradients are averaged by hand, not by wrapping the supernet in ``DistributedDataParallel``:
a sandwich step runs several subnetworks, each with its own backward pass, and a random one leaves
parts of the supernet unused. DDP would all-reduce at every backward pass (or, under ``no_sync``,
only the last one's hooks would fire, with ``find_unused_parameters=True`` marking parameters the
last subnetwork skipped as unused although earlier ones used them), and it reads a module's forward
pass, not ``set_active``. One all-reduce (mean) of all accumulated gradients after the sandwich's
backward passes and before ``optimizer.step`` is exactly the gradient of the global batch's loss,
with one communication per step; BatchNorm running statistics are averaged the same way after the
step, so every process holds the same weights and buffers after every step. Rank 0's parameters are
broadcast at the start (after a resume, which every process makes from the same checkpoint). Only
rank 0 writes the checkpoint and logs; an epoch's losses are summed over all processes. Under
``torchrun`` the global torch generator (RandAugment) is reseeded per (seed, epoch, rank) at each
epoch's start, so shards are augmented independently and a resumed epoch is augmented as the
interrupted one was; a single process keeps the stream it always had.

Debug hook: with ``HWNAS_DDP_TRACE=PATH`` in the environment every process appends, after each
step, one JSON line ``{"rank", "epoch", "step", "sha256"}`` (a hash of its whole state dict) to
``PATH.rank<N>``: the data-parallel test reads it to check all processes hold identical weights.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from hwnas.accelerator import Distributed, Precision, channels_last, resolve_device, to_device
from hwnas.arch import Arch, Stage
from hwnas.data import ImageSplits
from hwnas.errors import UserError
from hwnas.fileio import text_sha256
from hwnas.recipe import Recipe
from hwnas.space import SearchSpace
from hwnas.supernet.network import Supernet
from hwnas.supernet.store import inherited_accuracy
from hwnas.trainer import (
    CHECKPOINT_FILE,
    Prepared,
    _progress_bar,
    _train_loader,
    _TrainingState,
    batchnorm_images,
    load_checkpoint,
    make_optimizer,
    save_checkpoint,
    state_sha256,
    training_fingerprint,
    warmup_cosine,
)

METHOD_NAME = "sandwich-inplace-distillation"
PROGRESSIVE_NAME = "progressive-shrinking"
METHODS = ("sandwich", "progressive")  # what train_supernet's ``method`` and ``--method`` take
PHASES = ("largest", "kernel", "depth", "all")  # progressive shrinking: what is elastic in each quarter of the steps
EXPANSION_PHASE = PHASES.index("all")  # the phase that makes expansion elastic: its channels are sorted before it
# recipe fields of single-network training the supernet has no use for: refused rather than silently ignored
UNUSED_RECIPE_FIELDS = ("mixup", "dropout", "drop_path", "ema", "distill")
MAX_RANDOM_SUBNETS = 16
TRACE_ENV = "HWNAS_DDP_TRACE"  # debug hook: see the module docstring


KERNEL_TRANSFORM = (
    "each smaller depthwise kernel a learned linear map (identity at first, one per layer and size) of the next larger "
    "one's centre (OFA's kernel transformation)"
)


def training_method(random_subnets: int = 2, method: str = "sandwich", kernel_transform: bool = False) -> dict[str, Any]:
    """How the supernet is trained, as written into ``supernet.json`` and the checkpoint's fingerprint (which kind of
    :class:`Supernet` it is, too: ``kernel_transform`` appears only when it is on, so older descriptions still read)."""
    described = _method_description(random_subnets, method)
    return described | ({"kernel_transform": KERNEL_TRANSFORM} if kernel_transform else {})


def _method_description(random_subnets: int, method: str) -> dict[str, Any]:
    if method == "progressive":
        return {
            "name": PROGRESSIVE_NAME,
            "random_subnets": random_subnets,
            "phases": "equal quarters of the steps: the largest alone; + elastic kernel and resolution; "
            "+ elastic depth; + elastic expansion, width, SE and activation",
            "channel_sorting": "before the last phase, each block's expansion channels sorted by importance (L1 norm of "
            "the projection's weights reading them; the optimizer's state alike), as OFA does before elastic expansion",
            "label_loss": "largest subnetwork: cross-entropy on the labels (recipe label_smoothing)",
            "distillation": f"{random_subnets + 1} subnetworks per step sampled within the phase's choices: KL divergence "
            "to the largest's detached soft predictions (in place; OFA distils from the trained full network, frozen)",
            "resolution": "each subnetwork at its own (largest: highest)",
        }
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


def check_recipe(recipe: Recipe, random_subnets: int, method: str = "sandwich") -> None:
    """Refuse recipe fields supernet training does not apply (rather than ignore them), a bad subnetwork count and an
    unknown method."""
    if method not in METHODS:
        raise UserError(f"unknown supernet training method {method!r}; known: {', '.join(METHODS)}")
    unused = [name for name in UNUSED_RECIPE_FIELDS if getattr(recipe, name)]
    if unused:
        raise UserError(
            f"recipe field {unused[0]!r}={getattr(recipe, unused[0])} is not applied by supernet training "
            f"(it uses optimizer, lr, weight_decay, epochs, batch_size, warmup_epochs, label_smoothing, randaugment): "
            f"set {unused[0]}=0"
        )
    if not 0 <= random_subnets <= MAX_RANDOM_SUBNETS:
        raise UserError(f"random subnetworks per step must be 0 to {MAX_RANDOM_SUBNETS}, not {random_subnets}")


def check_inputs(
    space: SearchSpace, recipe: Recipe, data: ImageSplits, random_subnets: int, processes: int = 1, method: str = "sandwich"
) -> None:
    """Refuse, before any work, data the space cannot take, what :func:`check_recipe` refuses, and a batch
    ``processes`` data-parallel processes cannot share evenly."""
    if (data.channels, data.num_classes) != (space.in_channels, space.num_classes):
        raise UserError(
            f"data {data.name!r} has {data.channels} channel(s) and {data.num_classes} classes, "
            f"space {space.name!r} {space.in_channels} and {space.num_classes}"
        )
    check_recipe(recipe, random_subnets, method)
    if recipe.batch_size % processes:
        raise UserError(
            f"batch_size {recipe.batch_size} (the global batch) does not split evenly over {processes} processes: "
            f"set batch_size to a multiple of {processes}"
        )


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
    precision: Precision
    distributed: Distributed | None = None
    calibration: dict[int, torch.Tensor | None] = field(default_factory=dict)  # BatchNorm images per resolution
    method: str = "sandwich"

    @classmethod
    def start(
        cls,
        supernet: Supernet,
        recipe: Recipe,
        data: ImageSplits,
        seed: int,
        random_subnets: int,
        device: torch.device,
        distributed: Distributed | None = None,
        method: str = "sandwich",
    ) -> _Run:
        space = supernet.space
        supernet.to(device)  # before the optimizer is made: its state lives where the weights do
        if distributed is None:
            loader = _train_loader(data, max(space.resolutions), space.in_channels, recipe, seed, device)
        else:
            loader = _shard_loader(data, max(space.resolutions), space.in_channels, recipe, seed, device, distributed)
        optimizer = make_optimizer(supernet, recipe)
        steps = recipe.epochs * len(loader)
        warmup = round(recipe.warmup_epochs * len(loader))
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(steps, warmup))
        criterion = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
        precision = Precision.for_device(device)
        return cls(
            supernet, recipe, data, seed, random_subnets, loader, optimizer, schedule, criterion, precision, distributed,
            method=method,
        )  # fmt: skip

    @property
    def device(self) -> torch.device:
        return self.precision.device

    @property
    def is_main(self) -> bool:
        """The process that writes checkpoints and logs: the only one, or rank 0 of a data-parallel run."""
        return self.distributed is None or self.distributed.is_main

    def state(self) -> _TrainingState:
        generator: torch.Generator = self.loader.generator  # type: ignore[assignment]
        return _TrainingState(self.supernet, self.optimizer, self.schedule, None, generator, self.precision.scaler)

    def fingerprint(self) -> dict[str, Any]:
        space = self.supernet.space
        described = training_method(self.random_subnets, self.method, self.supernet.kernel_transform)
        identity = {"kind": "supernet", "space": space.hash, "method": described}
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
    accelerator: str = "auto",
    distributed: Distributed | None = None,
    method: str = "sandwich",
    kernel_transform: bool = False,
) -> SupernetTraining:
    """Train a :class:`Supernet` of ``space`` from scratch on ``data`` (see the module docstring).

    ``checkpoint``: a folder where every finished epoch is kept (``checkpoint.pt``) and resumed
    from. ``log`` gets the "resuming" line and one line per epoch with the largest and smallest
    subnetworks' validation accuracy (inherited weights, BatchNorm re-estimated).
    ``accelerator``: ``auto``, ``cpu`` or ``cuda``. ``distributed``: this process's place in a
    data-parallel run (its process group started, e.g. by :func:`hwnas.accelerator.distributed_session`);
    only its rank 0 writes the checkpoint, logs and shows progress. The supernet is returned on the CPU.
    ``method``: ``sandwich`` or ``progressive`` (shrinking), see the module docstring. ``kernel_transform``: smaller
    kernels through Once-for-All's learned transformation (:class:`hwnas.supernet.elastic.DynamicConv2d`).
    """
    check_inputs(space, recipe, data, random_subnets, distributed.world_size if distributed else 1, method)
    device = resolve_device(accelerator, distributed.local_rank if distributed is not None else None)
    threads = threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    supernet = Supernet(space, kernel_transform=kernel_transform)
    run = _Run.start(supernet, recipe, data, seed, random_subnets, device, distributed, method)
    points = _resume(run, checkpoint, log if run.is_main else None)
    if distributed is not None:
        distributed.broadcast_module(run.supernet)  # every process starts from rank 0's weights (all resumed alike)
    steps = len(run.loader)
    with _progress_bar(progress and run.is_main) as bar:
        task = bar.add_task("supernet", total=recipe.epochs * steps, completed=len(points) * steps, loss=float("nan"))
        for epoch in range(len(points) + 1, recipe.epochs + 1):
            points.append(_epoch(run, epoch, lambda loss: bar.update(task, advance=1, loss=loss)))
            if checkpoint is not None and run.is_main:
                save_checkpoint(Path(checkpoint) / CHECKPOINT_FILE, run.state(), run.fingerprint(), points)
            if log is not None and run.is_main:
                log(_epoch_line(points[-1], recipe.epochs))
    run.supernet.set_active(run.supernet.largest_arch())
    run.supernet.to("cpu")
    return SupernetTraining(run.supernet.eval(), points, training_method(random_subnets, method, kernel_transform), threads)


def _shard_loader(
    data: ImageSplits,
    resolution: int,
    channels: int,
    recipe: Recipe,
    seed: int,
    device: torch.device,
    distributed: Distributed,
) -> DataLoader:
    """This process's shard of the training images, ``batch_size / processes`` a batch (every shard as long)."""
    dataset = Prepared(data.train, resolution, channels, recipe.randaugment)
    sampler_seed = int(text_sha256(f"hwnas-supernet-shards:{seed}", 15), 16)
    sampler = DistributedSampler(
        dataset, num_replicas=distributed.world_size, rank=distributed.rank, shuffle=True, seed=sampler_seed
    )
    return DataLoader(
        dataset,
        batch_size=recipe.batch_size // distributed.world_size,
        sampler=sampler,
        generator=torch.Generator().manual_seed(seed),
        drop_last=False,
        pin_memory=device.type == "cuda",
    )


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
    archs = random.Random(f"hwnas-supernet:{run.seed}:{epoch}")  # alike on every process of a data-parallel run
    run.loader.generator.manual_seed(int(text_sha256(f"{run.seed}:{epoch}", 15), 16))  # type: ignore[union-attr]
    if run.distributed is not None:
        run.loader.sampler.set_epoch(epoch)  # type: ignore[attr-defined]
        torch.manual_seed(int(text_sha256(f"hwnas-supernet:{run.seed}:{epoch}:{run.distributed.rank}", 15), 16))
    ends = [net.largest_arch(), net.smallest_arch()]
    net.train()
    label_sum = distill_sum = 0.0
    seen = 0
    trace = os.environ.get(TRACE_ENV)
    steps = len(run.loader)
    with channels_last(net):  # the layout only: see hwnas.accelerator.channels_last
        for step, (images, labels) in enumerate(run.loader, start=1):
            if run.method == "progressive":
                phase = _progressive_step_phase(run, (epoch - 1) * steps + step - 1, run.recipe.epochs * steps)
                shrunk = [progressive_sample(net.space, ends[0], phase, archs) for _ in range(run.random_subnets + 1)]
                step_archs = [ends[0], *shrunk] if phase else [ends[0]]
            else:
                step_archs = [*ends, *(net.sample_arch(archs) for _ in range(run.random_subnets))]
            label_loss, distill_loss = _sandwich_step(run, images, labels, step_archs)
            label_sum += label_loss * len(labels)
            distill_sum += distill_loss * len(labels)
            seen += len(labels)
            advance(label_sum / seen)
            if trace:
                _trace(trace, run, epoch, step)
    if run.distributed is not None:  # the epoch's losses over every process's shard
        label_sum, distill_sum, seen = run.distributed.sum([label_sum, distill_sum, seen], run.device)
    largest, smallest = (_validate(run, arch) for arch in ends)
    return {
        "epoch": epoch,
        "train_loss": label_sum / seen,
        "distill_loss": distill_sum / seen,
        "largest_val_accuracy": largest,
        "smallest_val_accuracy": smallest,
        "seconds": time.perf_counter() - started,
    }


def _progressive_step_phase(run: _Run, step_index: int, total_steps: int) -> int:
    """The step's phase; on the first step of the phase that makes expansion elastic, the supernet's expansion
    channels are first sorted by importance (``Supernet.sort_channels``, the optimizer's state with them), as
    Once-for-All reorganises them before it shrinks the expansion."""
    phase = progressive_phase(step_index, total_steps)
    if phase == EXPANSION_PHASE and step_index and progressive_phase(step_index - 1, total_steps) < phase:
        run.supernet.sort_channels(run.optimizer)
    return phase


def progressive_phase(step_index: int, total_steps: int) -> int:
    """The phase (an index of :data:`PHASES`) of the step ``step_index`` (from 0) of ``total_steps``: equal quarters."""
    return min(len(PHASES) - 1, step_index * len(PHASES) // max(total_steps, 1))


def progressive_sample(space: SearchSpace, largest: Arch, phase: int, rng: random.Random) -> Arch:
    """A subnetwork drawn within ``phase``'s choices; what is not elastic yet is the largest's.

    Phase 1: resolution and each block's kernel drawn, every stage at the largest's width, depth and block; phase 2:
    its depth drawn too; phase 3: any architecture (``SearchSpace.sample``). Phase 0 trains the largest alone.
    """
    if phase >= len(PHASES) - 1:
        return space.sample(rng)
    stages = []
    for spec, top in zip(space.stages, largest.stages, strict=True):
        depth = rng.choice(spec.depths) if phase >= 2 else len(top.blocks)
        blocks = tuple(dataclasses.replace(top.blocks[0], kernel=rng.choice(spec.kernels)) for _ in range(depth))
        stages.append(Stage(top.width, blocks))
    return Arch(largest.space, rng.choice(space.resolutions), tuple(stages))


def _sandwich_step(run: _Run, images: torch.Tensor, labels: torch.Tensor, archs: list[Arch]) -> tuple[float, float]:
    """Largest on the labels, the others distilled from its soft predictions; one optimizer step for all.

    Forward passes under the run's autocast (CUDA only), losses in float32 on the logits cast back; in a
    data-parallel run the accumulated gradients are averaged over the processes before the step.
    """
    net, precision = run.supernet, run.precision
    images, labels = to_device((images, labels), run.device)
    run.optimizer.zero_grad(set_to_none=True)
    net.set_active(archs[0])
    with precision.autocast():
        teacher = net(_resized(images, archs[0].resolution)).float()
    label_loss = run.criterion(teacher, labels)
    precision.backward(label_loss)
    soft = F.softmax(teacher.detach(), dim=1)
    distill = 0.0
    for arch in archs[1:]:
        net.set_active(arch)
        with precision.autocast():
            logits = net(_resized(images, arch.resolution)).float()
        loss = F.kl_div(F.log_softmax(logits, dim=1), soft, reduction="batchmean")
        precision.backward(loss)  # gradients accumulate; each subnetwork's graph is freed before the next is built
        distill += loss.item()
    if run.distributed is not None:
        run.distributed.average_gradients(net.parameters())
    precision.step(run.optimizer)
    run.schedule.step()
    if run.distributed is not None:
        run.distributed.average_buffers(net)
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
        images = batchnorm_images(run.data, arch.resolution, space.in_channels, run.supernet)
        run.calibration[arch.resolution] = to_device(images, run.device)
    with torch.random.fork_rng(devices=[]):  # extracting builds a network, whose initialisation draws random numbers
        return inherited_accuracy(run.supernet, arch, run.data, bn_images=run.calibration[arch.resolution])


def _trace(path: str, run: _Run, epoch: int, step: int) -> None:
    """The debug hook of the module docstring: this process's state-dict hash after a step, one JSON line."""
    rank = run.distributed.rank if run.distributed is not None else 0
    line = json.dumps({"rank": rank, "epoch": epoch, "step": step, "sha256": state_sha256(run.supernet.state_dict())})
    with open(f"{path}.rank{rank}", "a", encoding="utf-8") as handle:
        handle.write(line + "\n")


def _epoch_line(point: dict[str, float], epochs: int) -> str:
    return (
        f"epoch {point['epoch']}/{epochs}: loss {point['train_loss']:.4f} (distillation {point['distill_loss']:.4f}), "
        f"val accuracy largest {point['largest_val_accuracy']:.4f}, smallest {point['smallest_val_accuracy']:.4f} "
        f"({point['seconds']:.1f} s)"
    )
