"""Train a candidate for real: build it, apply its Recipe, return validation accuracy and curve.

Every recipe field changes what happens (torchvision.transforms.v2 RandAugment and MixUp, label
smoothing, dropout, stochastic depth, weight EMA, cosine schedule with linear warm-up), so the
FBNetV3 joint search really searches over recipes. Runs are seeded: the same arch, recipe, data,
seed and thread count give the same numbers.

Given a ``checkpoint`` folder, training keeps every finished epoch there (``checkpoint.pt``: model,
optimizer, scheduler, EMA, curve so far and every random state, written atomically), and a run
started again with the same folder resumes after the last finished epoch: a kill loses at most the
epoch in progress, and the resumed run ends with the same weights as an uninterrupted one. The
file holds tensors and plain Python values only and is read with ``torch.load(weights_only=True)``;
it names what it was trained with (a fingerprint of model, recipe, data and seed), and a checkpoint
of other training is refused in one line rather than resumed.

``accelerator`` (``auto``, ``cpu``, ``cuda``: :mod:`hwnas.accelerator`) chooses the device: a CUDA GPU
when there is one (forward and backward passes in mixed precision, losses, BatchNorm and evaluation
in float32), all CPU cores otherwise, exactly as before accelerators existed. The module trained is
handed back on the CPU, and checkpoints hold CPU tensors: a run started on a GPU resumes on a CPU.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from hwnas.accelerator import Precision, channels_last, module_device, resolve_device, to_cpu, to_device
from hwnas.arch import Arch
from hwnas.builder import build_model, count_flops, count_params, input_shape, recalibrate_batchnorm
from hwnas.data import ImageSplits
from hwnas.errors import UserError
from hwnas.fileio import atomic_write, atomic_write_json, check_archive
from hwnas.formats import FORMATS
from hwnas.recipe import Recipe
from hwnas.space import SearchSpace

# Images per forward pass when evaluating. Small batches keep a layer's activations in the core's cache: on one thread
# here, validation of 1000 images took 0.6-0.7 s per default-space network in batches of 64 against 1.6-1.7 s in 512,
# and scoring a supernet's subnetworks (BatchNorm folded, channels-last) 0.48-0.55 s against 0.75-0.83 s (0.40 s at 16,
# 0.33 at 32-64, 0.42 at 128 in one comparison). Predictions do not depend on the batch (the same accuracies for 30
# subnetworks and 5 networks at both sizes).
EVAL_BATCH = 64
CHECKPOINT_FILE = "checkpoint.pt"
BATCHNORM_IMAGES = 512  # un-augmented training images for precise BatchNorm statistics
CHECKPOINT_FORMAT = "hwnas-train-checkpoint"
CHECKPOINT_SCHEMA = FORMATS["training-checkpoint"]


class Prepared(Dataset):
    """Resize, match the space's channel count, augment (training only), scale to float.

    Grayscale images given to a colour model are repeated over its channels (nothing is lost). Colour images given to
    a grayscale model are refused in one line unless ``to_gray`` says the caller wants them turned gray: done
    silently, a run on an RGB folder would train, search and export grayscale networks and never say so.
    """

    def __init__(self, dataset: Dataset, resolution: int, channels: int, randaugment: int = 0, to_gray: bool = False) -> None:
        self.dataset = dataset
        if channels == 1 and not to_gray:
            _refuse_colour(dataset)
        steps: list[Callable[[torch.Tensor], torch.Tensor]] = [v2.Resize((resolution, resolution), antialias=True)]
        steps.append(_channel_adapter(channels))
        if randaugment > 0:
            steps.append(v2.RandAugment(magnitude=randaugment, num_magnitude_bins=31))
        steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize([0.5] * channels, [0.5] * channels)]
        self.transform = v2.Compose(steps)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image, label = self.dataset[index]
        return self.transform(image), label


def _refuse_colour(dataset: Dataset) -> None:
    """One line when ``dataset``'s images have colour channels (its first image tells: a dataset has one shape)."""
    if len(dataset) == 0:  # type: ignore[arg-type]
        return
    image = dataset[0][0]
    if isinstance(image, torch.Tensor) and image.ndim == 3 and image.shape[0] > 1:
        raise UserError(
            f"these images have {image.shape[0]} channels and the network takes 1 (grayscale): use a space written for "
            f"them (hwnas space show --preset NAME --json > space.json; set in_channels), or convert the images to gray"
        )


def _channel_adapter(channels: int) -> Callable[[torch.Tensor], torch.Tensor]:
    def adapt(image: torch.Tensor) -> torch.Tensor:
        if image.shape[0] == channels:
            return image
        if channels == 1:
            return v2.functional.rgb_to_grayscale(image[:3])
        return image[:1].expand(channels, -1, -1)

    return adapt


@dataclass(frozen=True)
class TrainResult:
    arch: str
    recipe: dict[str, Any]
    dataset: str
    resolution: int
    val_accuracy: float
    curve: list[dict[str, float]]
    wall_time_s: float
    params: int
    flops: int
    seed: int
    threads: int
    test_accuracy: float | None = None
    model: nn.Module | None = field(default=None, compare=False, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {name: value for name, value in self.__dict__.items() if name != "model"}

    def save(self, folder: Path) -> None:
        """A run folder: the weights (state dict, loadable with ``weights_only=True``), then ``result.json``, so a kill
        between the two never leaves a result naming weights that were not written (a resumed ``hwnas scale`` took such
        a folder as finished and failed on its missing model.pt)."""
        if self.model is not None:
            state = self.model.state_dict()
            atomic_write(folder / "model.pt", lambda temp: torch.save(state, temp))
        atomic_write_json(folder / "result.json", FORMATS["run-result"].stamp(self.to_json()))


def train(
    space: SearchSpace,
    arch: Arch,
    recipe: Recipe,
    data: ImageSplits,
    *,
    seed: int = 0,
    threads: int | None = None,
    progress: bool = True,
    evaluate_test: bool = False,
    checkpoint: Path | None = None,
    log: Callable[[str], None] | None = None,
    accelerator: str = "auto",
    initial: nn.Module | None = None,
    teacher: nn.Module | None = None,
) -> TrainResult:
    """Train ``arch`` with ``recipe`` on ``data``; accuracy is measured on the validation split.

    ``initial``: start from these weights instead of a fresh initialisation (a subnetwork inherited from a supernet,
    :func:`hwnas.supernet.store.inherited_network`, to fine-tune); it must be the network ``build_model`` makes for
    ``arch`` (checked by its state dict's names and shapes), and is trained in place.

    With ``checkpoint`` (a folder) every finished epoch is kept there and a second call resumes
    after the last one (see the module docstring); ``log`` receives the "resuming" line.
    ``accelerator``: ``auto`` (a CUDA GPU if there is one, else the CPU), ``cpu`` or ``cuda``.
    ``teacher``: a network taking the same images whose soft outputs are learnt from (``recipe.distill`` > 0; see
    :func:`fit_model`), such as the supernet's largest subnetwork for a network fine-tuned from it.
    """
    space.validate(arch)
    device = resolve_device(accelerator)  # before any work: --accelerator cuda without a GPU is one line now
    if data.num_classes != space.num_classes:
        raise UserError(f"data {data.name!r} has {data.num_classes} classes, space {space.name!r} expects {space.num_classes}")
    threads = threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    started = time.perf_counter()
    model = build_model(space, arch, dropout=recipe.dropout, drop_path=recipe.drop_path)
    identity = {"arch": arch.format(), "space": space.hash}
    if initial is not None:
        _check_same_network(model, initial, arch)
        model, identity = initial, identity | {"initial": _state_digest(initial)}
    curve = fit_model(
        model,
        data,
        recipe,
        arch.resolution,
        space.in_channels,
        seed=seed,
        progress=progress,
        checkpoint=checkpoint,
        identity=identity,
        log=log,
        accelerator=accelerator,
        teacher=teacher,
    )
    evaluated = curve.model
    test_accuracy = None
    if evaluate_test:
        test_accuracy = evaluate(evaluated.to(device), Prepared(data.test, arch.resolution, space.in_channels))
        evaluated.to("cpu")
    return TrainResult(
        arch=arch.format(),
        recipe=recipe.to_json(),
        dataset=data.name,
        resolution=arch.resolution,
        val_accuracy=curve.points[-1]["val_accuracy"],
        curve=curve.points,
        wall_time_s=time.perf_counter() - started,
        params=count_params(model),
        flops=count_flops(model, input_shape(space, arch)),
        seed=seed,
        threads=threads,
        test_accuracy=test_accuracy,
        model=evaluated,
    )


def _check_same_network(built: nn.Module, initial: nn.Module, arch: Arch) -> None:
    """``initial`` has exactly the tensors ``build_model`` gives ``arch`` (else it is another network: refused)."""
    wanted = {name: tuple(t.shape) for name, t in built.state_dict().items()}
    given = {name: tuple(t.shape) for name, t in initial.state_dict().items()}
    if wanted != given:
        raise UserError(f"the initial weights are not those of {arch.format()} (their tensors' names or shapes differ)")


def _state_digest(model: nn.Module) -> str:
    """What a checkpoint of training started from ``model``'s weights must match: a hash of those weights."""
    return state_sha256(model.state_dict())[:16]


def state_sha256(state: dict[str, torch.Tensor]) -> str:
    """A hash of a state dict's names and tensor bytes, in order (identical weights, identical hash)."""
    digest = hashlib.sha256()
    for name, tensor in state.items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _train_loader(
    data: ImageSplits, resolution: int, channels: int, recipe: Recipe, seed: int, device: torch.device | None = None
) -> DataLoader:
    dataset = Prepared(data.train, resolution, channels, recipe.randaugment)
    generator = torch.Generator().manual_seed(seed)
    pin = device is not None and device.type == "cuda"  # page-locked batches copy to the GPU while it computes
    return DataLoader(dataset, batch_size=recipe.batch_size, shuffle=True, generator=generator, drop_last=False, pin_memory=pin)


@dataclass
class FitCurve:
    """Per-epoch points (train loss, validation accuracy, seconds) and the module to evaluate (EMA weights if on)."""

    points: list[dict[str, float]]
    model: nn.Module


def fit_model(
    model: nn.Module,
    data: ImageSplits,
    recipe: Recipe,
    resolution: int,
    channels: int,
    *,
    seed: int = 0,
    progress: bool = False,
    checkpoint: Path | None = None,
    identity: dict[str, Any] | None = None,
    log: Callable[[str], None] | None = None,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    accelerator: str = "auto",
    teacher: nn.Module | None = None,
) -> FitCurve:
    """Train any ``nn.Module`` with ``recipe`` on ``data``, evaluating on the validation split each epoch.

    Used by ``train`` for a search-space candidate, and by search workers and pruning fine-tuning
    for any module. It sets no process-wide state: the caller chooses torch's threads and seeds
    the global generator (weight init, dropout, augmentation); ``seed`` orders the batches only.

    ``checkpoint`` (a folder): each finished epoch is written to ``checkpoint.pt`` there, and an
    existing one is resumed from (it sets the module's weights and torch's global random state to
    where that epoch ended). ``identity`` adds what the module alone does not tell (e.g. the
    architecture) to the fingerprint a checkpoint must match. ``log`` gets the "resuming" line;
    ``on_epoch`` is called with each finished epoch's point, after its checkpoint is written.

    ``accelerator`` (``auto``, ``cpu``, ``cuda``): where it trains (see the module docstring); the
    module is moved there for training and back to the device it came on before this returns.

    ``teacher``: a network whose softened logits the module also learns from, weighted by ``recipe.distill`` (pruning's
    fine-tuning passes the unpruned network); a recipe that distils without a teacher is refused.
    """
    distiller = _distiller(recipe, teacher)
    device = resolve_device(accelerator)
    home = module_device(model)
    model.to(device)  # before the optimizer and the EMA copy are made: their state lives where the weights do
    precision = Precision.for_device(device)
    loader = _train_loader(data, resolution, channels, recipe, seed, device)
    optimizer = make_optimizer(model, recipe)
    total_steps = recipe.epochs * len(loader)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(total_steps, round(recipe.warmup_epochs * len(loader))))
    criterion = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    mixup = v2.MixUp(alpha=recipe.mixup, num_classes=data.num_classes) if recipe.mixup > 0 else None
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(recipe.ema), use_buffers=True) if recipe.ema > 0 else None
    evaluated: nn.Module = ema if ema is not None else model
    val_set = Prepared(data.val, resolution, channels)
    calibration = to_device(batchnorm_images(data, resolution, channels, evaluated), device)
    points: list[dict[str, float]] = []
    state = _TrainingState(model, optimizer, schedule, ema, loader.generator, precision.scaler)  # type: ignore[arg-type]
    if distiller is not None:  # a checkpoint taught by one teacher does not resume under another
        identity = (identity or {}) | {"teacher": _state_digest(teacher)}  # type: ignore[arg-type]
        distiller.teacher.to(device)
    fingerprint = training_fingerprint(model, data, recipe, resolution, channels, seed, identity)
    if checkpoint is not None:
        points = load_checkpoint(Path(checkpoint) / CHECKPOINT_FILE, state, fingerprint, recipe.epochs)
        if points and log is not None:
            done = len(points)
            more = f"from epoch {done + 1} of {recipe.epochs}" if done < recipe.epochs else "nothing left to train"
            log(f"resuming {Path(checkpoint) / CHECKPOINT_FILE}: {done} epoch(s) done, {more}")
    with _progress_bar(progress) as bar:
        task = bar.add_task("training", total=total_steps, completed=len(points) * len(loader), loss=float("nan"))
        for epoch in range(len(points) + 1, recipe.epochs + 1):
            epoch_start, loss_sum, seen = time.perf_counter(), 0.0, 0
            model.train()
            with channels_last(model, distiller.teacher if distiller is not None else None):
                for images, labels in loader:
                    targets = labels
                    if mixup is not None:
                        images, targets = mixup(images, labels)
                    images, targets = to_device((images, targets), device)
                    with precision.autocast():
                        logits = model(images)
                    loss = criterion(logits.float(), targets)  # the loss in float32 (on the CPU logits already are)
                    if distiller is not None:
                        with torch.no_grad(), precision.autocast():
                            taught = distiller.teacher(images)
                        loss = distiller.loss(loss, logits.float(), taught.float())
                    optimizer.zero_grad(set_to_none=True)
                    precision.backward(loss)
                    precision.step(optimizer)
                    schedule.step()
                    if ema is not None:
                        ema.update_parameters(model)
                    loss_sum, seen = loss_sum + loss.item() * len(labels), seen + len(labels)
                    bar.update(task, advance=1, loss=loss_sum / seen)
            if calibration is not None:  # precise BatchNorm statistics: a short run's running averages lag its weights
                recalibrate_batchnorm(evaluated, calibration)
            accuracy = evaluate(evaluated, val_set)
            point = {
                "epoch": epoch,
                "train_loss": loss_sum / seen,
                "val_accuracy": accuracy,
                "seconds": time.perf_counter() - epoch_start,
            }
            points.append(point)
            if checkpoint is not None:
                save_checkpoint(Path(checkpoint) / CHECKPOINT_FILE, state, fingerprint, points)
            if progress:
                stamp = time.strftime("[%H:%M:%S]")  # a whole line, no file:line suffix (console.log adds one and wraps)
                line = f"{stamp} epoch {epoch}/{recipe.epochs}: loss {loss_sum / seen:.4f}, val accuracy {accuracy:.4f}"
                bar.console.print(line, soft_wrap=True, highlight=False, markup=False)
            if on_epoch is not None:
                on_epoch(point)
    model.to(home)
    evaluated.to(home)
    if distiller is not None:
        distiller.teacher.to(home)
    return FitCurve(points, evaluated.module if isinstance(evaluated, AveragedModel) else evaluated)


@dataclass
class Distiller:
    """Knowledge distillation (Hinton et al., 2015): ``(1 - w) * hard loss + w * T^2 * KL(teacher_T || student_T)``."""

    teacher: nn.Module
    weight: float
    temperature: float

    def loss(self, hard: torch.Tensor, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        t = self.temperature
        soft = nn.functional.kl_div(
            nn.functional.log_softmax(student / t, dim=1),
            nn.functional.log_softmax(teacher / t, dim=1),
            reduction="batchmean",
            log_target=True,
        )
        return (1 - self.weight) * hard + self.weight * t * t * soft


def _distiller(recipe: Recipe, teacher: nn.Module | None) -> Distiller | None:
    if recipe.distill == 0:
        return None
    if teacher is None:
        raise UserError(
            f"recipe distill={recipe.distill:g} needs a teacher network, and only fine-tuning has one (the unpruned "
            "network after pruning, the largest subnetwork after a supernet): set distill=0 here"
        )
    return Distiller(teacher.eval(), recipe.distill, recipe.distill_temperature)


def batchnorm_images(data: ImageSplits, resolution: int, channels: int, model: nn.Module) -> torch.Tensor | None:
    """The first training images, un-augmented, to re-estimate BatchNorm statistics from before each evaluation.

    With few steps (a search proxy, a one-epoch quick run) the running averages lag the weights so far
    that a network which learned scores chance: a quick run's winner, one epoch on 3,000 images, gave
    10.2% validation accuracy with them and 71.6% re-estimated. ``None`` when the model has no BatchNorm.
    """
    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return None
    prepared = Prepared(data.train, resolution, channels)
    return torch.stack([prepared[i][0] for i in range(min(BATCHNORM_IMAGES, len(prepared)))])


# ---- per-epoch checkpoints ---------------------------------------------------------------------
@dataclass
class _TrainingState:
    """Everything that carries over from one epoch to the next."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LRScheduler
    ema: AveragedModel | None
    generator: torch.Generator  # the loader's: batch order
    scaler: torch.amp.GradScaler | None = None  # float16 training on CUDA only

    def to_dict(self) -> dict[str, Any]:
        python_state = random.getstate()
        numpy_state = np.random.get_state()
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "rng": {
                "torch": torch.get_rng_state(),
                "loader": self.generator.get_state(),
                "python": [python_state[0], list(python_state[1]), python_state[2]],
                "numpy": [
                    numpy_state[0],
                    torch.from_numpy(np.array(numpy_state[1], dtype=np.int64)),  # type: ignore[index]
                    *[float(v) if isinstance(v, float) else int(v) for v in numpy_state[2:]],  # type: ignore[misc]
                ],
            },
        }
        if self.scaler is not None:
            state["scaler"] = self.scaler.state_dict()
        if torch.cuda.is_initialized():  # dropout on a GPU draws from its generators
            state["cuda_rng"] = torch.cuda.get_rng_state_all()
        return state

    def load(self, saved: dict[str, Any]) -> None:
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.schedule.load_state_dict(saved["schedule"])
        if self.ema is not None:
            self.ema.load_state_dict(saved["ema"])
        rng = saved["rng"]
        torch.set_rng_state(rng["torch"])
        self.generator.set_state(rng["loader"])
        version, internal, gauss = rng["python"]
        random.setstate((version, tuple(internal), gauss))
        name, keys, position, has_gauss, cached = rng["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, cached))
        if self.scaler is not None and saved.get("scaler"):
            self.scaler.load_state_dict(saved["scaler"])
        cuda_rng = saved.get("cuda_rng")  # a GPU run's, resumed on as many GPUs; elsewhere there is nothing to restore
        if cuda_rng and torch.cuda.is_available() and len(cuda_rng) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_rng)


def training_fingerprint(
    model: nn.Module,
    data: ImageSplits,
    recipe: Recipe,
    resolution: int,
    channels: int,
    seed: int,
    identity: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What a checkpoint must have been trained with to be resumed: module shape, recipe, data, seed."""
    shapes = [(name, list(tensor.shape)) for name, tensor in model.state_dict().items()]
    return {
        "model": hashlib.sha256(json.dumps(shapes).encode()).hexdigest()[:16],
        "recipe": recipe.to_json(),
        "data": {"name": data.name, "train": len(data.train), "val": len(data.val)},  # type: ignore[arg-type]
        "resolution": resolution,
        "channels": channels,
        "seed": seed,
        **({"identity": identity} if identity else {}),
    }


def save_checkpoint(path: Path, state: _TrainingState, fingerprint: dict[str, Any], points: list[dict[str, float]]) -> None:
    payload = {
        "format": CHECKPOINT_FORMAT,
        CHECKPOINT_SCHEMA.key: CHECKPOINT_SCHEMA.version,
        "fingerprint": json.dumps(fingerprint, sort_keys=True),
        "epoch": len(points),
        "curve": [dict(point) for point in points],
        "state": to_cpu(state.to_dict()),  # device-independent: a run started on a GPU resumes on a CPU
    }
    atomic_write(path, lambda temp: torch.save(payload, temp))


def load_checkpoint(path: Path, state: _TrainingState, fingerprint: dict[str, Any], epochs: int) -> list[dict[str, float]]:
    """Restore ``state`` from ``path`` and return the curve so far ([] when there is no checkpoint yet)."""
    if not path.exists():
        return []
    fresh = "re-run with --fresh to start over, or give another --out"
    check_archive(path, "checkpoint")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated, foreign or hostile: torch's unpickler refuses anything but tensors and plain types
        detail = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        raise UserError(f"checkpoint {path} is not readable ({detail}); {fresh}") from None
    if not isinstance(saved, dict) or saved.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"{path} is not an hwnas training checkpoint; {fresh}")
    CHECKPOINT_SCHEMA.check(saved, path)
    try:
        stored = json.loads(saved["fingerprint"])
    except (KeyError, TypeError, ValueError):
        raise UserError(f"checkpoint {path} has no readable fingerprint; {fresh}") from None
    differs = _differences(stored, fingerprint)
    if differs:
        raise UserError(f"checkpoint {path} is from other training ({'; '.join(differs[:3])}); {fresh}")
    curve = saved.get("curve")
    if not isinstance(curve, list) or len(curve) != saved.get("epoch") or not 0 < len(curve) <= epochs:
        raise UserError(f"checkpoint {path} is inconsistent (epoch {saved.get('epoch')!r} of {epochs}); {fresh}")
    try:
        state.load(saved["state"])
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise UserError(f"checkpoint {path} does not fit this training ({str(error).splitlines()[0][:200]}); {fresh}") from None
    return [dict(point) for point in curve]


def _differences(stored: Any, now: Any, prefix: str = "") -> list[str]:
    """``recipe.lr 0.1 (now 0.05)`` for each leaf that differs."""
    if isinstance(stored, dict) and isinstance(now, dict):
        found = []
        for key in sorted(set(stored) | set(now)):
            found += _differences(stored.get(key), now.get(key), f"{prefix}.{key}" if prefix else str(key))
        return found
    if stored == now:
        return []
    name = {"model": "model (layer shapes)"}.get(prefix, prefix)
    return [f"{name} {stored} (now {now})"]


def remove_checkpoint(folder: Path) -> bool:
    """Delete the checkpoint in ``folder`` (``--fresh``); True if there was one."""
    path = Path(folder) / CHECKPOINT_FILE
    existed = path.exists()
    path.unlink(missing_ok=True)
    return existed


def _progress_bar(enabled: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.3f}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
        transient=False,
    )


def make_optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    """Weight decay on convolution and linear weights only, never on BN parameters or biases."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": recipe.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=recipe.lr, momentum=0.9, nesterov=True)
    if recipe.optimizer == "rmsprop":
        return torch.optim.RMSprop(groups, lr=recipe.lr, alpha=0.9, momentum=0.9, eps=1e-3)
    return torch.optim.AdamW(groups, lr=recipe.lr)


def warmup_cosine(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """Learning-rate factor: linear warm-up to 1, then cosine decay to 0 at ``total_steps``."""
    warmup_steps = min(warmup_steps, max(total_steps - 1, 0))

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(total_steps - warmup_steps, 1)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return factor


@torch.no_grad()
def evaluate(model: nn.Module, dataset: Dataset) -> float:
    """Top-1 accuracy of ``model`` on a prepared dataset, on the model's device, in float32 (no autocast)."""
    model.eval()
    device = module_device(model)
    correct = total = 0
    for images, labels in DataLoader(dataset, batch_size=EVAL_BATCH):
        images, labels = to_device((images, labels), device)
        correct += int((model(images).argmax(1) == labels).sum())
        total += len(labels)
    return correct / max(total, 1)
